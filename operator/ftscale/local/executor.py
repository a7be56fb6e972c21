"""The local executor: runs a study's runs as trainer subprocesses, resumably.

Decisions are pure functions (`plan_resume`, `failure_of`, `harvest`), the process handling is
one small class (`Executor`). What a restart sees is what is on disk (ftscale.local.workdir):

* a run with a valid result is never re-run (failed ones only with --retry-failed);
* a run that was started but has no result (Ctrl-C, crash, power cut) is started again;
* an unreadable result, or one that is not this run's, is reported, moved aside
  (result.json.corrupt-<time>) and the run is redone — it is never silently used.

Trainer processes run in their own session, so a Ctrl-C reaches only `ftscale run`, which then
stops them (SIGTERM, then SIGKILL after a grace period), records nothing for them and exits
130; the same command resumes. Retries follow the Job semantics of the cluster: a crash without
a result is retried up to execution.backoffLimit times; an invalid config (trainer exit code 2)
and a deadline are not.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ftscale.grid import PlannedRun
from ftscale.local.workdir import (CORRUPT, DONE, FAILED, INTERRUPTED, NEW, RunState, Workdir,
                                   check_identity)
from ftscale.results import (DEADLINE_EXCEEDED, FAILED as OUTCOME_FAILED, INVALID_CONFIG,
                             NON_FINITE_LOSS, OOM_KILLED, RUNTIME_ERROR, ResultError, RunResult,
                             parse_result)

# The trainer's exit code for "this config can never run" (ftscale_trainer: ConfigError).
EXIT_INVALID_CONFIG = 2
EXIT_NON_FINITE_LOSS = 3
# How long a stopped trainer gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.2
LOG_TAIL_BYTES = 1500


# ---- resume decisions ----------------------------------------------------------------------
@dataclass
class ResumePlan:
    todo: list[PlannedRun]  # to start, in grid order
    finished: dict[str, RunResult]  # run id → terminal result kept as is
    counts: dict[str, int]  # state → number of runs
    notes: list[str] = field(default_factory=list)  # what the user should know


def plan_resume(runs: list[PlannedRun], states: dict[str, RunState],
                retry_failed: bool = False) -> ResumePlan:
    """Which runs to start, given each run's state on disk (pure)."""
    todo, finished = [], {}
    counts = {DONE: 0, FAILED: 0, CORRUPT: 0, INTERRUPTED: 0, NEW: 0}
    notes = []
    for run in runs:
        st = states[run.run_id]
        counts[st.state] += 1
        if st.state == DONE or (st.state == FAILED and not retry_failed):
            finished[run.run_id] = st.result
            continue
        if st.state == CORRUPT:
            notes.append(f"run {run.run_id} ({describe(run)}): result.json is unusable "
                         f"({st.problem}); moved aside and the run is redone")
        todo.append(run)
    if counts[FAILED] and not retry_failed:
        notes.append(f"{counts[FAILED]} failed run(s) kept as failed; add --retry-failed to "
                     "run them again")
    return ResumePlan(todo, finished, counts, notes)


def describe(run: PlannedRun) -> str:
    k = run.key
    size = f" {k.pet_size}" if k.pet_size is not None else ""
    return f"{k.model} {k.method}{size} D={k.data_size} seed={k.seed}"


# ---- outcome of one trainer process ----------------------------------------------------------
def failure_of(exit_code: int, timed_out: bool) -> tuple[str, bool, str]:
    """(reason, retriable, message) for a trainer that ended without a usable result."""
    if timed_out:
        return DEADLINE_EXCEEDED, False, "killed after execution.activeDeadlineSeconds"
    if exit_code == EXIT_INVALID_CONFIG:
        return INVALID_CONFIG, False, "the trainer rejected its config (exit code 2)"
    if exit_code == EXIT_NON_FINITE_LOSS:
        return NON_FINITE_LOSS, False, ("the loss became NaN/inf (exit code 3); lower the "
                                        "learning rate for this method or model")
    if exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return OOM_KILLED, True, ("killed by SIGKILL, most likely the out-of-memory killer; "
                                  "lower batchSize or run fewer runs at once (--parallel)")
    return RUNTIME_ERROR, True, f"the trainer exited with code {exit_code}"


def harvest(run: PlannedRun, study: str, attempt_dir: Path, exit_code: int, timed_out: bool,
            log_tail: str) -> tuple[RunResult, bool]:
    """The result of a finished attempt and whether to retry it.

    A result the trainer wrote (Succeeded or Failed, e.g. NonFiniteLoss) is final. Without a
    usable one, a Failed result is made from the exit code (retriable unless the config is
    invalid or the deadline passed)."""
    path = attempt_dir / "result.json"
    problem = None
    if path.is_file() and not timed_out:
        try:
            result = parse_result(path.read_bytes())
            problem = check_identity(result, run.key, run.run_id)
            if problem is None:
                return result, False
        except ResultError as exc:
            problem = str(exc)
    reason, retriable, message = failure_of(exit_code, timed_out)
    if problem:
        message += f"; its result.json was unusable ({problem})"
    if log_tail:
        message += f"; log tail: {log_tail}"
    k = run.key
    failed = RunResult(study=study, run_id=run.run_id, model=k.model, method=k.method,
                       pet_size=k.pet_size, data_size=k.data_size, seed=k.seed,
                       outcome=OUTCOME_FAILED, reason=reason, message=message)
    return failed, retriable


def trainer_command(config_path: Path, output_dir: Path) -> list[str]:
    """The trainer entry point; $FTSCALE_TRAINER_CMD replaces `python -m ftscale_trainer`
    (e.g. to run a trainer from another environment)."""
    base = os.environ.get("FTSCALE_TRAINER_CMD")
    cmd = shlex.split(base) if base else [sys.executable, "-m", "ftscale_trainer"]
    return cmd + ["--config", str(config_path), "--output", str(output_dir)]


def _tail(path: Path, limit: int = LOG_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-6:])[-limit:]


# ---- the process pool ----------------------------------------------------------------------
@dataclass
class _Active:
    run: PlannedRun
    proc: subprocess.Popen
    log: Any
    started: float
    gpus: tuple[str, ...]
    attempt: int


@dataclass
class Outcome:
    results: dict[str, RunResult]  # run id → terminal result of this session
    interrupted: bool = False
    stopped_early: str | None = None  # why no more runs were started (maxFailedRuns)


class Executor:
    """Starts trainer processes for `runs`, at most `parallel` at once (and never more GPUs than
    the pool has), and commits each terminal result to the workdir.

    `on_event(kind, run, result)` is called with kind "start" or "finish" (for the progress bar
    and metrics). `configs` maps run id → trainer config (runtime keys are added here)."""

    def __init__(self, workdir: Workdir, study: str, runs: list[PlannedRun],
                 configs: dict[str, dict[str, Any]], *, parallel: int, threads: int,
                 gpus: tuple[str, ...] = (), backoff_limit: int = 0,
                 deadline_seconds: float | None = None, max_failed_runs: int = -1,
                 failed_before: int = 0,
                 on_event: Callable[[str, PlannedRun, RunResult | None], None] | None = None):
        self.workdir = workdir
        self.study = study
        self.queue = list(runs)
        self.configs = configs
        self.parallel = max(1, parallel)
        self.threads = threads
        self.free_gpus = list(gpus)
        self.all_gpus = tuple(gpus)
        self.backoff_limit = backoff_limit
        self.deadline = deadline_seconds
        self.max_failed = max_failed_runs
        self.failed = failed_before
        self.on_event = on_event or (lambda *a: None)
        self.active: dict[str, _Active] = {}
        self.attempts: dict[str, int] = {}

    # -- one process --
    def _gpus_for(self, run: PlannedRun) -> int:
        if not self.all_gpus:
            return 0
        return min(max(1, run.gpus), len(self.all_gpus))

    def _start(self, run: PlannedRun) -> None:
        attempt = self.attempts.get(run.run_id, 0) + 1
        self.attempts[run.run_id] = attempt
        config = dict(self.configs[run.run_id])
        config.setdefault("threads", self.threads)
        attempt_dir = self.workdir.prepare_attempt(run.run_id, config)
        n_gpus = self._gpus_for(run)
        gpus = tuple(self.free_gpus[:n_gpus])
        del self.free_gpus[:n_gpus]
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(self.threads)
        if self.all_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        log = open(self.workdir.log_file(run.run_id), "ab")
        log.write(f"\n==== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n"
                  .encode())
        log.flush()
        proc = subprocess.Popen(
            trainer_command(self.workdir.config_file(run.run_id), attempt_dir),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True)  # Ctrl-C reaches us only; we stop children in order
        self.active[run.run_id] = _Active(run, proc, log, time.monotonic(), gpus, attempt)
        self.on_event("start", run, None)

    def _finish(self, act: _Active, exit_code: int, timed_out: bool) -> RunResult | None:
        act.log.close()
        self.free_gpus.extend(act.gpus)
        del self.active[act.run.run_id]
        result, retriable = harvest(act.run, self.study, self.workdir.attempt_dir(act.run.run_id),
                                    exit_code, timed_out, _tail(self.workdir.log_file(
                                        act.run.run_id)))
        if not result.ok and retriable and act.attempt <= self.backoff_limit:
            self.queue.insert(0, act.run)  # retry next, like a Job's pod restart
            self.on_event("retry", act.run, result)
            return None
        if result.wall_seconds is None:
            result.wall_seconds = round(time.monotonic() - act.started, 3)
        self.workdir.commit_result(act.run.run_id, result)
        if not result.ok:
            self.failed += 1
        self.on_event("finish", act.run, result)
        return result

    def _stop_all(self) -> None:
        for act in self.active.values():
            _signal_group(act.proc, signal.SIGTERM)
        end = time.monotonic() + STOP_GRACE_SECONDS
        for act in list(self.active.values()):
            try:
                act.proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(act.proc, signal.SIGKILL)
                act.proc.wait()
            act.log.close()
        self.active.clear()

    def _can_start(self, run: PlannedRun) -> bool:
        if len(self.active) >= self.parallel:
            return False
        return len(self.free_gpus) >= self._gpus_for(run)

    # -- the loop --
    def run(self) -> Outcome:
        results: dict[str, RunResult] = {}
        stopped = None
        try:
            while self.queue or self.active:
                if 0 <= self.max_failed < self.failed and self.queue:
                    stopped = (f"{self.failed} runs failed, more than execution.maxFailedRuns="
                               f"{self.max_failed}: no new runs were started")
                    self.queue.clear()
                while self.queue and self._can_start(self.queue[0]):
                    self._start(self.queue.pop(0))
                time.sleep(POLL_SECONDS)
                for act in list(self.active.values()):
                    code = act.proc.poll()
                    timed_out = False
                    if code is None and self.deadline and \
                            time.monotonic() - act.started > self.deadline:
                        _signal_group(act.proc, signal.SIGKILL)
                        code, timed_out = act.proc.wait(), True
                    if code is not None:
                        result = self._finish(act, code, timed_out)
                        if result is not None:
                            results[act.run.run_id] = result
        except KeyboardInterrupt:
            self._stop_all()
            return Outcome(results, interrupted=True, stopped_early=stopped)
        return Outcome(results, stopped_early=stopped)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
