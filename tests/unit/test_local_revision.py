"""`ftscale run` and models[].revision: a local run uses the folder of that revision (the
cluster's model-cache layout, <root>/<org>--<name>/<revision>, under --models-root or the
study's folder) or is refused before any run starts, naming the model and how to fetch it —
never the hub id passed on, which the trainer would load at its default revision."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from ftscale.local import study_run

SOURCE = "EleutherAI/pythia-160m"


def write_study(folder: Path, *, source: str = SOURCE, revision: str | None = "step1000") -> Path:
    model = {"name": "p160", "source": source, "parameters": 85056000}
    if revision:
        model["revision"] = revision
    for split in ("train", "dev", "test"):
        (folder / f"{split}.jsonl").write_text(json.dumps({"source": "a", "target": "b"}) + "\n")
    doc = {"apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy",
           "metadata": {"name": "rev"},
           "spec": {"task": {"name": "mt", "data": {"train": "train.jsonl", "dev": "dev.jsonl",
                                                    "test": "test.jsonl"}},
                    "models": [model], "methods": [{"name": "fmt"}], "dataSizes": [8]}}
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def revision_dir(root: Path, revision: str = "step1000", source: str = SOURCE) -> Path:
    folder = root / source.replace("/", "--") / revision
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    return folder


def dry_run(study: Path, tmp_path: Path, **kwargs) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = study_run.run_study(str(study), workdir=str(tmp_path / "wd"), dry_run=True,
                               fit=False, use_gpus=False, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


def test_a_revision_without_a_local_folder_is_refused_before_any_run(tmp_path, monkeypatch):
    monkeypatch.delenv("FTSCALE_TRAINER_CMD", raising=False)
    models = tmp_path / "models"
    models.mkdir()
    (models / SOURCE).mkdir(parents=True)  # the unversioned folder is not that revision
    (models / SOURCE / "config.json").write_text("{}")
    code, out, err = dry_run(write_study(tmp_path), tmp_path, models_root=str(models))
    assert code == study_run.EXIT_USAGE
    assert "would run" not in out
    assert "models[name=p160].revision step1000" in err
    assert "default revision" in err
    assert (f"python -m ftscale_trainer.prefetch --source {SOURCE} --revision step1000 "
            f"--local-dir {models.resolve()}/EleutherAI--pythia-160m/step1000") in err


def test_another_trainer_is_refused_too(tmp_path, monkeypatch):
    """A trainer of one's own is not told the revision either."""
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", "true")
    code, _, err = dry_run(write_study(tmp_path), tmp_path)
    assert code == study_run.EXIT_USAGE and "models[name=p160].revision step1000" in err


def test_the_folder_of_the_revision_is_the_runs_model_source(tmp_path, monkeypatch):
    monkeypatch.delenv("FTSCALE_TRAINER_CMD", raising=False)
    models = tmp_path / "models"
    folder = revision_dir(models)
    revision_dir(models, "step2000")  # another revision of the same source, not chosen
    code, out, err = dry_run(write_study(tmp_path), tmp_path, models_root=str(models))
    assert code == 0, err
    assert "would run" in out
    study = study_run.load_study(str(tmp_path / "study.yaml"))
    from ftscale import grid

    configs = study_run.local_configs(study, grid.expand(study.spec), tmp_path, None, models)
    assert {c["model_source"] for c in configs.values()} == {str(folder.resolve())}


def test_a_path_source_with_a_revision_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("FTSCALE_TRAINER_CMD", raising=False)
    path = tmp_path / "ckpt"
    path.mkdir()
    (path / "config.json").write_text("{}")
    code, _, err = dry_run(write_study(tmp_path, source=str(path)), tmp_path)
    assert code == study_run.EXIT_USAGE
    assert f"source {path} is a path" in err and "drop revision" in err


def test_revision_folder(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    in_second = revision_dir(second)
    assert study_run.revision_folder(SOURCE, "step1000", [first, second]) == in_second.resolve()
    in_first = revision_dir(first)
    assert study_run.revision_folder(SOURCE, "step1000", [first, second]) == in_first.resolve()
    # percent-encoded as the cluster's cache names it: refs/pr/1 is one folder
    pr = revision_dir(first, "refs%2Fpr%2F1")
    assert study_run.revision_folder(SOURCE, "refs/pr/1", [first]) == pr.resolve()
    # a folder without config.json is not a checkpoint
    (first / "EleutherAI--pythia-160m" / "empty").mkdir()
    assert study_run.revision_folder(SOURCE, "empty", [first]) is None
    assert study_run.revision_folder(SOURCE, "step9", [first, second]) is None
    assert study_run.revision_folder(str(in_first), "step1000", [first]) is None  # a path


def test_a_model_without_revision_keeps_the_old_lookup(tmp_path, monkeypatch):
    monkeypatch.delenv("FTSCALE_TRAINER_CMD", raising=False)
    models = tmp_path / "models"
    (models / SOURCE).mkdir(parents=True)
    assert study_run._local_source(SOURCE, tmp_path, models) == str((models / SOURCE).resolve())
    assert study_run._local_source("org/absent", tmp_path, models) == "org/absent"
    assert study_run._local_source(SOURCE, tmp_path, models, "step1") == SOURCE  # not found
