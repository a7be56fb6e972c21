"""Pure decisions of the local executor: resume plans, failure reasons, harvests, devices."""

from __future__ import annotations

import json
import signal

from ftscale import grid
from ftscale.identity import RunKey
from ftscale.local import devices
from ftscale.local.executor import failure_of, harvest, plan_resume
from ftscale.local.workdir import (CORRUPT, DONE, FAILED, INTERRUPTED, NEW, RunState, Workdir)
from ftscale.results import RunResult
from ftscale.spec import load_study

SPEC = load_study({
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "u"},
    "spec": {"task": {"name": "toy-en-de"}, "models": [{"name": "a", "source": "toy:a"}],
             "methods": [{"name": "fmt"}], "dataSizes": [1, 2, 3, 4, 5]},
}).spec
RUNS = grid.expand(SPEC)


def result_for(run, ok=True):
    k = run.key
    return RunResult(study="u", run_id=run.run_id, model=k.model, method=k.method,
                     pet_size=k.pet_size, data_size=k.data_size, seed=k.seed,
                     test_loss=1.0 if ok else None, outcome="Succeeded" if ok else "Failed",
                     reason=None if ok else "RuntimeError")


def test_resume_plan_keeps_results_and_redoes_the_rest():
    states = {RUNS[0].run_id: RunState(DONE, result_for(RUNS[0])),
              RUNS[1].run_id: RunState(FAILED, result_for(RUNS[1], ok=False)),
              RUNS[2].run_id: RunState(CORRUPT, problem="not JSON"),
              RUNS[3].run_id: RunState(INTERRUPTED),
              RUNS[4].run_id: RunState(NEW)}
    plan = plan_resume(RUNS, states)
    assert [r.run_id for r in plan.todo] == [r.run_id for r in RUNS[2:]]
    assert set(plan.finished) == {RUNS[0].run_id, RUNS[1].run_id}
    assert plan.counts == {DONE: 1, FAILED: 1, CORRUPT: 1, INTERRUPTED: 1, NEW: 1}
    assert any("not JSON" in n for n in plan.notes)
    assert any("--retry-failed" in n for n in plan.notes)
    retry = plan_resume(RUNS, states, retry_failed=True)
    assert [r.run_id for r in retry.todo] == [r.run_id for r in RUNS[1:]]


def test_failure_reasons_follow_job_semantics():
    assert failure_of(2, False)[:2] == ("InvalidConfig", False)
    assert failure_of(3, False)[:2] == ("NonFiniteLoss", False)
    assert failure_of(-signal.SIGKILL, False)[:2] == ("OOMKilled", True)
    assert failure_of(1, False)[:2] == ("RuntimeError", True)
    assert failure_of(0, True)[:2] == ("DeadlineExceeded", False)


def test_harvest_takes_the_trainers_result_or_makes_a_failed_one(tmp_path):
    run = RUNS[0]
    (tmp_path / "result.json").write_text(result_for(run).to_full_json())
    result, retry = harvest(run, "u", tmp_path, 0, False, "")
    assert result.ok and not retry
    # a result of another run is never taken
    (tmp_path / "result.json").write_text(result_for(RUNS[1]).to_full_json())
    result, retry = harvest(run, "u", tmp_path, 0, False, "tail")
    assert not result.ok and retry and "belongs to another run" in result.message
    assert result.run_id == run.run_id and result.data_size == run.key.data_size
    # no result and exit code 2: InvalidConfig, not retried
    (tmp_path / "result.json").unlink()
    result, retry = harvest(run, "u", tmp_path, 2, False, "ConfigError: bad key")
    assert result.reason == "InvalidConfig" and not retry and "bad key" in result.message


def test_workdir_states_from_disk(tmp_path):
    wd = Workdir(tmp_path)
    run = RUNS[0]
    assert wd.run_state(run.key, run.run_id).state == NEW
    wd.prepare_attempt(run.run_id, {"x": 1})
    assert wd.run_state(run.key, run.run_id).state == INTERRUPTED
    assert json.loads(wd.config_file(run.run_id).read_text()) == {"x": 1}
    (wd.attempt_dir(run.run_id) / "checkpoint").mkdir()
    (wd.attempt_dir(run.run_id) / "junk.txt").write_text("x")
    wd.prepare_attempt(run.run_id, {"x": 1})
    left = sorted(p.name for p in wd.attempt_dir(run.run_id).iterdir())
    assert left == ["checkpoint"]  # the trainer resumes from it
    wd.commit_result(run.run_id, result_for(run))
    assert wd.run_state(run.key, run.run_id).state == DONE
    assert not wd.attempt_dir(run.run_id).exists()
    wd.result_file(run.run_id).write_text("{")
    st = wd.run_state(run.key, run.run_id)
    assert st.state == CORRUPT and "not JSON" in st.problem
    moved = wd.quarantine(run.run_id)
    assert moved.exists() and wd.run_state(run.key, run.run_id).state == INTERRUPTED
    mismatch = RunResult(study="u", run_id=run.run_id, model="zz", method="fmt", pet_size=None,
                         data_size=run.key.data_size, seed=0, test_loss=1.0)
    wd.result_file(run.run_id).write_text(mismatch.to_full_json())
    assert wd.run_state(run.key, run.run_id).state == CORRUPT


def test_parallelism_by_devices():
    cpu = devices.Devices(gpus=(), cpus=8)
    assert devices.plan_parallelism(cpu, None, 4) == (4, 2)
    assert devices.plan_parallelism(cpu, None, 16) == (8, 1)
    assert devices.plan_parallelism(cpu, 3, 16) == (3, 2)
    gpu = devices.Devices(gpus=("0", "1", "2", "3"), cpus=16)
    assert devices.plan_parallelism(gpu, None, 8) == (4, 4)
    assert devices.plan_parallelism(gpu, None, 2) == (2, 8)


def test_gpus_from_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert devices.detect_gpus() == ("2", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert devices.detect_gpus() == ()
    assert devices.detect(use_gpus=False).gpus == ()


def test_fork_launcher_runs_the_trainer_main_in_children(tmp_path, monkeypatch):
    """The fork launcher calls ftscale_trainer.__main__.main(argv) in a child per run; here
    that main is the stand-in trainer, so no torch is needed."""
    import importlib.util
    from pathlib import Path

    import ftscale_trainer.__main__ as trainer_main
    from ftscale.local.executor import FORK, Executor

    fake_path = Path(__file__).resolve().parents[1] / "e2e" / "local_fake_trainer.py"
    loaded = importlib.util.spec_from_file_location("local_fake_trainer", fake_path)
    fake = importlib.util.module_from_spec(loaded)
    loaded.loader.exec_module(fake)
    monkeypatch.setattr(trainer_main, "main", fake.main)
    spec = load_study({
        "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "f"},
        "spec": {"task": {"name": "toy-en-de"}, "models": [{"name": "m1", "source": "toy:m1"}],
                 "methods": [{"name": "fmt"}], "dataSizes": [10, 20, 30]}}).spec
    runs = grid.expand(spec)
    configs = {r.run_id: grid.trainer_config("f", spec, r) for r in runs}
    monkeypatch.setenv("FAKE_HANG", runs[2].run_id)
    wd = Workdir(tmp_path)
    events = []
    out = Executor(wd, "f", runs, configs, parallel=2, threads=1, launcher=FORK,
                   deadline_seconds=2, on_event=lambda kind, run, res: events.append(kind)).run()
    assert not out.interrupted
    assert [out.results[r.run_id].ok for r in runs] == [True, True, False]
    assert out.results[runs[2].run_id].reason == "DeadlineExceeded"  # killpg reached the child
    assert "fake trainer:" in wd.log_file(runs[0].run_id).read_text()
    assert "(fork)" in wd.log_file(runs[0].run_id).read_text()
    assert events.count("start") == 3 and events.count("finish") == 3
