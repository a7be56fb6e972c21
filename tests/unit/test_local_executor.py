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
    # a result of another run is never taken; exit 0 without a usable result is BadResult and
    # not retried — what the operator records for the same pod on a cluster
    (tmp_path / "result.json").write_text(result_for(RUNS[1]).to_full_json())
    result, retry = harvest(run, "u", tmp_path, 0, False, "tail")
    assert not result.ok and not retry and result.reason == "BadResult"
    assert "belongs to another run" in result.message
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


# ---- issue 14: the workdir lock, and stopping on SIGINT/SIGTERM ----------------------------
def test_workdir_lock_refuses_a_second_holder_with_the_pid(tmp_path):
    import os

    import pytest

    from ftscale.local.workdir import WorkdirBusy

    first = Workdir(tmp_path / "wd").lock().acquire()
    with pytest.raises(WorkdirBusy) as info:
        Workdir(tmp_path / "wd").lock().acquire()
    assert info.value.pid == os.getpid() and f"pid {os.getpid()}" in str(info.value)
    first.release()
    with Workdir(tmp_path / "wd").lock():  # released: free again
        pass


def test_a_dead_holders_lock_does_not_block(tmp_path):
    """The kernel drops a flock when its holder dies (here: SIGKILL, no clean-up), so a
    crash never leaves a workdir locked; the stale PID in the file does not matter."""
    import subprocess
    import sys

    import pytest

    from ftscale.local.workdir import WorkdirBusy

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ftscale.local.workdir import Workdir; "
         "Workdir(sys.argv[1]).lock().acquire(); print('locked', flush=True); time.sleep(600)",
         str(tmp_path / "wd")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(WorkdirBusy) as info:
            Workdir(tmp_path / "wd").lock().acquire()
        assert info.value.pid == holder.pid
    finally:
        holder.kill()
        holder.wait()
    with Workdir(tmp_path / "wd").lock():
        assert (tmp_path / "wd" / ".lock").read_text().split() == [str(os_getpid())]


def os_getpid() -> int:
    import os
    return os.getpid()


def test_a_forked_trainer_does_not_keep_the_workdir_locked(tmp_path):
    """Children forked while the lock is held (the fork launcher's trainers) close their copy
    of it: a trainer that outlives `ftscale run` must not lock the workdir out."""
    import os

    lock = Workdir(tmp_path).lock().acquire()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(ready_w, b"x")  # os.fork has returned here: the at-fork hook has run
        time_sleep(30)
        os._exit(0)
    try:
        assert os.read(ready_r, 1) == b"x"
        lock.release()
        with Workdir(tmp_path).lock():
            pass
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def time_sleep(seconds: float) -> None:
    import time
    time.sleep(seconds)


def _alive(pid: int) -> bool:
    """Running, not a zombie (in a container, PID 1 may never reap the orphans)."""
    from pathlib import Path
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _stop_study(tmp_path, monkeypatch, *, ignore_term: bool, grace: float, signals: list[int]):
    """Two stand-in trainers (each with a worker child in its process group) that run until
    stopped; `signals` are sent to this process once both have started. Returns the
    Outcome and every PID the trainers started."""
    import os
    import sys
    import threading
    import time
    from pathlib import Path

    from ftscale.local.executor import SUBPROCESS, Executor

    fake = Path(__file__).resolve().parents[1] / "e2e" / "local_fake_trainer.py"
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {fake}")
    monkeypatch.setenv("FAKE_SLEEP", "600")
    monkeypatch.setenv("FAKE_PIDS", str(tmp_path / "pids"))
    if ignore_term:
        monkeypatch.setenv("FAKE_IGNORE_TERM", "1")
    runs = RUNS[:2]
    configs = {r.run_id: grid.trainer_config("u", SPEC, r) for r in runs}
    pids_file = tmp_path / "pids"

    def signal_when_started():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pids_file.exists() and len(pids_file.read_text().splitlines()) == 2:
                break
            time.sleep(0.05)
        for n, sig in enumerate(signals):
            # Signals sent back to back coalesce into one: send each once the last was noted.
            while executor.signals is None or executor.signals.count < n:
                time.sleep(0.01)
            os.kill(os.getpid(), sig)

    sender = threading.Thread(target=signal_when_started, daemon=True)
    executor = Executor(Workdir(tmp_path / "wd"), "u", runs, configs, parallel=2, threads=1,
                        launcher=SUBPROCESS, stop_grace=grace)
    sender.start()
    outcome = executor.run()
    sender.join()
    pids = [int(p) for line in pids_file.read_text().splitlines() for p in line.split()]
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return outcome, pids, runs


def test_sigterm_stops_every_trainers_process_group(tmp_path, monkeypatch):
    from ftscale.local.executor import EXITED_ON_TERM

    outcome, pids, runs = _stop_study(tmp_path, monkeypatch, ignore_term=False, grace=60,
                                      signals=[signal.SIGTERM])
    assert outcome.interrupted and outcome.signal == signal.SIGTERM
    assert outcome.stopped == {r.run_id: EXITED_ON_TERM for r in runs}
    assert len(pids) == 4 and not [p for p in pids if _alive(p)]  # trainers and their workers
    assert outcome.results == {}  # nothing recorded: the runs resume next time
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_trainers_that_ignore_sigterm_are_killed_after_the_grace_period(tmp_path, monkeypatch):
    from ftscale.local.executor import KILLED_AFTER_GRACE

    outcome, pids, runs = _stop_study(tmp_path, monkeypatch, ignore_term=True, grace=0.5,
                                      signals=[signal.SIGINT])
    assert outcome.interrupted and outcome.signal == signal.SIGINT
    assert outcome.stopped == {r.run_id: KILLED_AFTER_GRACE for r in runs}
    assert not [p for p in pids if _alive(p)]  # the group kill reached the workers too


def test_a_second_signal_kills_at_once_and_never_skips_the_kill(tmp_path, monkeypatch):
    """A second Ctrl-C during the grace period: SIGKILL now (it once interrupted the stop
    and left the trainers running)."""
    from ftscale.local.executor import KILLED_ON_SECOND_SIGNAL

    outcome, pids, runs = _stop_study(tmp_path, monkeypatch, ignore_term=True, grace=300,
                                      signals=[signal.SIGINT, signal.SIGINT])
    assert outcome.stopped == {r.run_id: KILLED_ON_SECOND_SIGNAL for r in runs}
    assert not [p for p in pids if _alive(p)]


def test_ftscale_run_starts_runs_while_the_budget_allows_and_records_the_rest(tmp_path, monkeypatch):
    """The operator's budget rule (ftscale.budget) in the local executor: with each run
    estimated at 1 GPU-hour, 2.0 spent before and 4.5 of budget, two more runs start — the
    third would exceed it — and the rest are recorded as not started."""
    import sys
    from pathlib import Path

    from ftscale.local.executor import SUBPROCESS, Executor

    fake = Path(__file__).resolve().parents[1] / "e2e" / "local_fake_trainer.py"
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {fake}")
    runs = RUNS[:5]
    configs = {r.run_id: grid.trainer_config("u", SPEC, r) for r in runs}
    executor = Executor(Workdir(tmp_path / "wd"), "u", runs[2:], configs, parallel=1, threads=1,
                        launcher=SUBPROCESS, budget_hours=4.5,
                        estimates={r.run_id: 1.0 for r in runs},
                        spent={runs[0].run_id: 1.0, runs[1].run_id: 1.0})
    outcome = executor.run()
    # the fake trainer runs on CPU: each finished run measured 0 GPU-hours, which lowers the
    # measured/estimated correction for the next ones, so all three start
    assert len(outcome.results) == 3 and executor.not_started == []
    tight = Executor(Workdir(tmp_path / "wd2"), "u", runs[2:], configs, parallel=1, threads=1,
                     launcher=SUBPROCESS, budget_hours=2.5,
                     estimates={r.run_id: 1.0 for r in runs},
                     spent={runs[0].run_id: 2.0})
    outcome = tight.run()
    assert len(outcome.results) == 0 and len(tight.not_started) == 3
    assert "not started" in outcome.stopped_early and "2.5 GPU-hours" in outcome.stopped_early
