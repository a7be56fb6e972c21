"""`ftscale run` with spec.design adaptive, on the stand-in trainer (tests/e2e/
local_fake_trainer.py: losses from a planted law, no torch): it starts fewer runs than the
grid, records why each was chosen, exits 0 with the rest not needed, and resumes to the same
verdict without starting anything."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import yaml

FAKE = Path(__file__).resolve().parents[1] / "e2e" / "local_fake_trainer.py"

STUDY = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "adt"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": n, "source": f"org/{n}", "parameters": x}
                   for n, x in (("m1", 10_000), ("m2", 40_000), ("m3", 160_000))],
        "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4]}],
        "dataSizes": [100, 200, 400, 800, 1600, 3200],
        "law": {"heldOut": {"x": "none", "d": "none"}, "bootstrap": 0},
        "design": {"strategy": "adaptive",
                   "target": {"kind": "extrapolation", "model": "m3", "dataSize": 6400},
                   "stopWhen": {"halfWidth": 0.01}, "batchSize": 2, "lossNoise": 0.002},
        "execution": {"maxParallelRuns": 2},
    },
}


def _run(study_file, workdir, *extra):
    from ftscale.local.study_run import run_study

    out, err = io.StringIO(), io.StringIO()
    code = run_study(str(study_file), workdir=str(workdir), out=out, err=err, **dict(extra))
    return code, out.getvalue(), err.getvalue()


def test_adaptive_study_starts_fewer_runs_and_says_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {FAKE}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "starts"))
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(STUDY))
    wd = tmp_path / "wd"

    code, out, err = _run(study_file, wd, ("dry_run", True))
    assert code == 0
    assert out.count("would run") == 10 and "seed design" in out  # 5 per method

    code, out, err = _run(study_file, wd)
    assert code == 0, out + err
    started = (tmp_path / "starts").read_text().split()
    grid_size = 3 * 6 * 2
    assert 10 <= len(started) < grid_size
    log = [json.loads(line) for line in (wd / "design.jsonl").read_text().splitlines()]
    chose = {d["run_id"]: d["reason"] for d in log if d["event"] == "chose"}
    assert set(chose) == set(started)  # one reason per started run, none for the others
    assert sum("seed design" in r for r in chose.values()) == 10
    assert any("lowers the target's variance" in r for r in chose.values())
    done = log[-1]
    assert done["event"] == "done" and done["stopped"].startswith("target met")
    assert len(done["not_needed"]) == grid_size - len(started)
    assert f"{grid_size - len(started)} run(s) not needed" in out
    # the console line per choice (written above the progress bar, as the "done" lines)
    assert "chose m1 fmt D=100 seed=0: seed design" in capsys.readouterr().out
    report = (wd / "report.md").read_text()
    assert "## Adaptive design" in report and "why it was chosen" in report
    results = (wd / "results.jsonl").read_text().splitlines()
    assert len(results) == len(started)

    # resume: the design is done, nothing starts, same exit code
    code, out, _ = _run(study_file, wd)
    assert code == 0 and "not needed" in out
    assert len((tmp_path / "starts").read_text().split()) == len(started)


@pytest.mark.slow  # ~20 s: the tighter rule runs most of the grid
def test_a_tighter_stop_rule_resumes_where_the_loose_one_stopped(tmp_path, monkeypatch):
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {FAKE}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "starts"))
    study_file = tmp_path / "study.yaml"
    study_file.write_text(yaml.safe_dump(STUDY))
    wd = tmp_path / "wd"
    assert _run(study_file, wd)[0] == 0
    first = (tmp_path / "starts").read_text().split()
    tighter = json.loads(json.dumps(STUDY))
    tighter["spec"]["design"]["stopWhen"]["halfWidth"] = 0.003  # design is mutable
    study_file.write_text(yaml.safe_dump(tighter))
    code, out, err = _run(study_file, wd)
    assert code == 0, out + err
    second = (tmp_path / "starts").read_text().split()
    assert len(second) > len(first) and len(set(second)) == len(second)  # nothing re-run
