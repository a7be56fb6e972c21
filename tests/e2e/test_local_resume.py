"""`ftscale run` resumability and failure handling, with a stand-in trainer (no torch):
finished runs are skipped, interrupted ones restart, Ctrl-C leaves a resumable state, corrupt
results are reported and redone, failures follow the Job retry rules, and edits that would mix
incomparable results are refused."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ftscale.local.study_run import run_study
from ftscale.local.workdir import Workdir

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("local_fake_trainer.py")

STUDY = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "mini"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": "m1", "source": "toy:m1"}, {"name": "m2", "source": "toy:m2"}],
        "methods": [{"name": "fmt"}],
        "dataSizes": [100, 200, 400],
        "execution": {"maxParallelRuns": 2, "backoffLimit": 1},
    },
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {FAKE}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "starts.log"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    return tmp_path


def write_study(path: Path, **spec_changes) -> Path:
    doc = json.loads(json.dumps(STUDY))
    doc["spec"].update(spec_changes)
    path.write_text(yaml.safe_dump(doc))
    return path


def starts(tmp_path: Path) -> list[str]:
    log = tmp_path / "starts.log"
    return log.read_text().split() if log.exists() else []


def run(study: Path, workdir: Path, **kw) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_study(str(study), workdir=str(workdir), fit=False, out=out, err=err, **kw)
    return code, out.getvalue() + err.getvalue()


def test_finished_runs_are_skipped_on_resume(env):
    study = write_study(env / "s.yaml")
    code, text = run(study, env / "wd")
    assert code == 0, text
    assert len(starts(env)) == 6
    wd = Workdir(env / "wd")
    results = wd.all_results()
    assert len(results) == 6 and all(r.ok for r in results.values())
    assert len((env / "wd" / "results.jsonl").read_text().splitlines()) == 6
    assert not list((env / "wd" / "runs").glob("*/attempt"))  # attempts are cleaned up
    code, text = run(study, env / "wd")
    assert code == 0 and "6 done" in text
    assert len(starts(env)) == 6  # nothing ran again


def test_interrupted_and_corrupt_runs_are_redone_never_used(env):
    study = write_study(env / "s.yaml")
    assert run(study, env / "wd")[0] == 0
    wd = Workdir(env / "wd")
    ids = sorted(wd.all_results())
    # a crash mid-run leaves a run folder without result.json
    os.remove(wd.result_file(ids[0]))
    (wd.attempt_dir(ids[0])).mkdir()
    # a torn/garbled result file
    wd.result_file(ids[1]).write_text('{"schema": "ftscale.io/run-result/v1", "study": "mi')
    # a well-formed result that belongs to another run
    other = json.loads(wd.result_file(ids[3]).read_text())
    wd.result_file(ids[2]).write_text(json.dumps(other))
    before = len(starts(env))
    code, text = run(study, env / "wd")
    assert code == 0, text
    assert "3 done" in text and "2 corrupt" in text and "1 interrupted" in text
    assert "result.json is unusable (not JSON" in text
    assert "belongs to another run" in text
    assert sorted(starts(env)[before:]) == sorted(ids[:3])
    assert len(list(wd.run_dir(ids[1]).glob("result.json.corrupt-*"))) == 1
    results = wd.all_results()
    assert len(results) == 6 and results[ids[2]].run_id == ids[2]


def test_failures_retry_like_jobs_and_stay_failed(env, monkeypatch):
    study = write_study(env / "s.yaml")
    from ftscale import grid
    from ftscale.spec import load_study
    ids = [r.run_id for r in grid.expand(load_study(study).spec)]
    monkeypatch.setenv("FAKE_FAIL", ids[0])
    monkeypatch.setenv("FAKE_BAD_CONFIG", ids[1])
    code, text = run(study, env / "wd")
    assert code == 1
    log = starts(env)
    assert log.count(ids[0]) == 2  # first try + backoffLimit=1 retry
    assert log.count(ids[1]) == 1  # an invalid config is never retried
    wd = Workdir(env / "wd")
    r0 = wd.run_state(grid.expand(load_study(study).spec)[0].key, ids[0]).result
    assert r0.outcome == "Failed" and r0.reason == "RuntimeError" and "boom" in r0.message
    r1 = wd.all_results()[ids[1]]
    assert r1.reason == "InvalidConfig"
    # a rerun keeps failed runs failed ...
    code, text = run(study, env / "wd")
    assert code == 1 and "--retry-failed" in text and len(starts(env)) == len(log)
    # ... unless asked, and then they can succeed
    monkeypatch.delenv("FAKE_FAIL")
    monkeypatch.delenv("FAKE_BAD_CONFIG")
    code, text = run(study, env / "wd", retry_failed=True)
    assert code == 0, text
    assert all(r.ok for r in wd.all_results().values())


def test_deadline_kills_and_is_not_retried(env, monkeypatch):
    study = write_study(env / "s.yaml", models=[{"name": "m1", "source": "toy:m1"}],
                        dataSizes=[100],
                        execution={"activeDeadlineSeconds": 1, "backoffLimit": 3})
    from ftscale import grid
    from ftscale.spec import load_study
    (only,) = grid.expand(load_study(study).spec)
    monkeypatch.setenv("FAKE_HANG", only.run_id)
    code, text = run(study, env / "wd")
    assert code == 1
    assert Workdir(env / "wd").all_results()[only.run_id].reason == "DeadlineExceeded"
    assert starts(env).count(only.run_id) == 1


def test_growing_the_study_runs_only_new_runs_and_incomparable_edits_are_refused(env):
    study = write_study(env / "s.yaml")
    assert run(study, env / "wd")[0] == 0
    grown = write_study(env / "s.yaml", dataSizes=[100, 200, 400, 800], seeds=[0, 1])
    code, text = run(grown, env / "wd")
    assert code == 0, text
    assert len(starts(env)) == 6 + (16 - 6)
    edited = write_study(env / "s.yaml", training={"maxSteps": 5})
    code, text = run(edited, env / "wd")
    assert code == 2
    assert "spec.training is immutable" in text and "new --workdir" in text


def test_invalid_study_is_rejected_before_anything_runs(env):
    study = write_study(env / "s.yaml", dataSizes=[100, 100])
    code, text = run(study, env / "wd")
    assert code == 2 and "spec.dataSizes[1]: Duplicate value: 100" in text
    assert not (env / "wd").exists() and starts(env) == []


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_state(env):
    """A real SIGINT to a real `ftscale run` process: it stops its trainers, keeps finished
    results, exits 130, and the same command finishes the rest."""
    study = write_study(env / "s.yaml", execution={"maxParallelRuns": 2})
    cmd = [sys.executable, "-m", "ftscale", "run", str(study), "--workdir", str(env / "wd"),
           "--no-report", "--parallel", "2"]
    # Runs sleep long enough that the two started after the first pair are surely still
    # running when SIGINT lands, even on a loaded CI machine.
    environ = dict(os.environ, FAKE_SLEEP="5",
                   PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}")
    # As a terminal's foreground job gets it: SIGINT at its default disposition. (A shell starts
    # background jobs with SIGINT ignored, and children inherit that; CI may run us so.)
    proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wd = Workdir(env / "wd")
    deadline = time.monotonic() + 60
    while len(wd.all_results()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)  # the next two runs are now mid-way
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text
    assert "interrupted (SIGINT):" in text and "run the same command again to resume" in text
    kept = wd.all_results()
    assert 2 <= len(kept) < 6
    # no trainer survived its parent
    time.sleep(0.3)
    alive = subprocess.run(["pgrep", "-f", str(FAKE)], capture_output=True, text=True).stdout
    assert alive.strip() == ""
    environ["FAKE_SLEEP"] = "0"
    done = subprocess.run(cmd, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(kept)} done" in done.stdout
    assert len(wd.all_results()) == 6
    # finished runs were not started again
    log = starts(env)
    assert all(log.count(i) == 1 for i in kept)


def test_a_missing_toy_world_or_data_file_stops_before_any_run(env, monkeypatch):
    monkeypatch.setenv("FTSCALE_CACHE", str(env / "empty-cache"))
    monkeypatch.delenv("FTSCALE_TRAINER_CMD")  # preflight checks this environment's trainer
    study = write_study(env / "s.yaml")
    code, text = run(study, env / "wd")
    assert code == 2 and "run `ftscale toy build`" in text
    assert starts(env) == []
    data = write_study(env / "d.yaml", task={"name": "mine", "data": {
        "train": "nope/train.jsonl", "dev": "nope/dev.jsonl", "test": "nope/test.jsonl"}})
    code, text = run(data, env / "wd2")
    assert code == 2 and f"{env / 'nope' / 'train.jsonl'} does not exist" in text


def _alive(pid: int) -> bool:
    """Running, not a zombie (in a container, PID 1 may never reap orphans)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_one_run_per_workdir_and_sigterm_stops_every_trainer(env):
    """A second `ftscale run` on a busy workdir refuses with the first one's PID and starts
    nothing; SIGTERM (what `timeout`, systemd and batch schedulers send) stops every trainer's
    process group, exits 143, and the same command resumes."""
    study = write_study(env / "s.yaml", execution={"maxParallelRuns": 2})
    cmd = [sys.executable, "-m", "ftscale", "run", str(study), "--workdir", str(env / "wd"),
           "--no-report", "--parallel", "2"]
    environ = dict(os.environ, FAKE_SLEEP="600", FAKE_PIDS=str(env / "pids"),
                   FTSCALE_STOP_GRACE_SECONDS="5",
                   PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}")
    proc = subprocess.Popen(cmd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
                (env / "pids").exists() and len((env / "pids").read_text().splitlines()) == 2):
            time.sleep(0.1)
        before = starts(env)
        assert len(before) == 2
        code, text = run(study, env / "wd")
        assert code == 2, text
        assert f"in use by another `ftscale run` (pid {proc.pid})" in text
        assert starts(env) == before  # the second run started nothing
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, out
    assert "interrupted (SIGTERM)" in out and "exited on SIGTERM" in out
    pids = [int(p) for line in (env / "pids").read_text().splitlines() for p in line.split()]
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)], "a trainer or its worker outlived ftscale run"
    # the lock went with the process: the same command resumes and finishes
    os.environ.pop("FAKE_PIDS", None)
    code, text = run(study, env / "wd")
    assert code == 0, text
    assert "2 interrupted" in text and len(Workdir(env / "wd").all_results()) == 6


def test_a_yaml_syntax_error_is_one_line(env):
    study = env / "s.yaml"
    study.write_text("apiVersion: ftscale.io/v1alpha1\nkind: ScalingStudy\nmetadata:\n"
                     "  name: mini\nspec:\n  models: [{name: m1, source: toy:m1}\n"
                     "  methods: []\n")
    code, text = run(study, env / "wd")
    assert code == 2
    assert text.strip().splitlines() == [
        f"error: {study}:7:3: not valid YAML: while parsing a flow sequence, expected ',' or "
        "']', but got '<scalar>'"]


def test_a_study_name_that_is_not_a_dns_label_never_reaches_the_workdir_path(env, monkeypatch):
    monkeypatch.chdir(env)
    doc = json.loads(json.dumps(STUDY))
    doc["metadata"]["name"] = "../../escape"
    (env / "s.yaml").write_text(yaml.safe_dump(doc))
    code, text = run_default_workdir(env / "s.yaml")
    assert code == 2 and "metadata.name must be a DNS label" in text and "got ../../escape" in text
    assert not (env / "runs").exists() and not (env.parent.parent / "escape").exists()


def run_default_workdir(study: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_study(str(study), fit=False, out=out, err=err)
    return code, out.getvalue() + err.getvalue()
