"""The local executor: runs a study's runs as trainer subprocesses, resumably.

Decisions are pure functions (`plan_resume`, `failure_of`, `harvest`), the process handling is
one small class (`Executor`). What a restart sees is what is on disk (ftscale.local.workdir):

* a run with a valid result is never re-run (failed ones only with --retry-failed);
* a run that was started but has no result (Ctrl-C, crash, power cut) is started again;
* an unreadable result, or one that is not this run's, is reported, moved aside
  (result.json.corrupt-<time>) and the run is redone — it is never silently used.

Trainer processes run in their own session (and process group), so a Ctrl-C reaches only
`ftscale run`. On SIGINT or SIGTERM (Ctrl-C, `timeout`, systemd, a batch scheduler) it stops
every trainer's process group — SIGTERM, on which the trainer saves a checkpoint, then SIGKILL
after a grace period (FTSCALE_STOP_GRACE_SECONDS, default 15), or at once on a second signal
— records nothing for them and exits 128 + the signal (130, 143); the same command resumes.
The handlers only note the signal; the loop acts on it, so no exception lands half-way
through starting a trainer or in the middle of the stop (a second Ctrl-C once skipped the
kill that way). Retries follow the Job semantics of
the cluster, from the same exit-code table (ftscale.api.outcomes): a retriable failure (a crash,
an interruption, the OOM killer) is retried up to execution.backoffLimit times; a non-retriable
one (invalid config, non-finite loss, CUDA out of memory) and a deadline are not.

Two launchers start a trainer (same CLI, same files, same exit codes):
* `fork` (default when the trainer is importable here): this process imports the trainer and
  torch once, then forks one child per run, which calls the trainer's `main(argv)`. Importing
  torch costs seconds per process — on a laptop CPU as much as a tiny run itself. The parent
  never runs a torch operation, so no thread pool exists at fork time.
* `subprocess`: `python -m ftscale_trainer ...` per run, or $FTSCALE_TRAINER_CMD. Used when that
  variable is set, with FTSCALE_LAUNCHER=subprocess, or where fork is unavailable.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from ftscale import budget
from ftscale.budget import gpu_seconds
from ftscale.design import DesignDecision
from ftscale.grid import PlannedRun
from ftscale.local.workdir import (CORRUPT, DONE, FAILED, INTERRUPTED, NEW, RunState, Workdir,
                                   check_identity)
from ftscale.api import outcomes as oc
from ftscale.api import run_contract
from ftscale.results import ResultError, RunResult, parse_result

# How long a stopped trainer gets to exit after SIGTERM before SIGKILL: time to save a
# checkpoint (the trainer saves on SIGTERM). $FTSCALE_STOP_GRACE_SECONDS overrides it.
STOP_GRACE_SECONDS = 15.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How each trainer was stopped (Outcome.stopped): it exited on SIGTERM within the grace
# period, was killed when the grace period ran out, or was killed on a second signal.
EXITED_ON_TERM, KILLED_AFTER_GRACE, KILLED_ON_SECOND_SIGNAL = (
    "exited on SIGTERM", "SIGKILL after the grace period", "SIGKILL on a second signal")


def stop_grace_seconds() -> float:
    value = os.environ.get("FTSCALE_STOP_GRACE_SECONDS")
    return float(value) if value else STOP_GRACE_SECONDS
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
    """(reason, retriable, message) for a trainer that ended without a usable result: the
    exit-code table (ftscale.api.outcomes) decides, as the Job's podFailurePolicy does."""
    if timed_out:
        return oc.DEADLINE_EXCEEDED, False, "killed after execution.activeDeadlineSeconds"
    if exit_code in (-signal.SIGKILL, 128 + signal.SIGKILL):
        return oc.OOM_KILLED, True, ("killed by SIGKILL, most likely the out-of-memory killer; "
                                     "lower batchSize or run fewer runs at once (--parallel)")
    if exit_code == oc.EXIT_OK:
        # exited 0 without a usable result: what the operator calls BadResult, not retried
        return oc.BAD_RESULT, False, "the trainer exited 0 but left no usable result"
    entry = oc.BY_CODE.get(exit_code) or oc.BY_CODE[oc.EXIT_RUNTIME_ERROR]
    return entry.reason, entry.retriable, f"the trainer exited with code {exit_code}: {entry.meaning}"


def harvest(run: PlannedRun, study: str, attempt_dir: Path, exit_code: int, timed_out: bool,
            log_tail: str) -> tuple[RunResult, bool]:
    """The result of a finished attempt and whether to retry it.

    A result the trainer wrote is taken (a Failed one is retried when its reason is in
    the exit-code table's retriable reasons). Without a usable one, a Failed result is made from the exit code."""
    path = attempt_dir / "result.json"
    problem = None
    if path.is_file() and not timed_out:
        try:
            result = parse_result(path.read_bytes())
            problem = check_identity(result, run.key, run.run_id)
            if problem is None:
                return result, (not result.ok and oc.is_retriable(result.reason))
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
                       outcome=oc.FAILED, reason=reason, message=message)
    return failed, retriable


def trainer_args(config_path: Path, output_dir: Path) -> list[str]:
    return run_contract.trainer_argv((), str(config_path), str(output_dir))[
        len(run_contract.DEFAULT_COMMAND):]


def trainer_command(config_path: Path, output_dir: Path,
                    command: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """The run's command line (ftscale.api.run_contract, as in the run Job): `command` is
    spec.execution.command (a trainer of your own); $FTSCALE_TRAINER_CMD overrides both (e.g.
    to run a trainer from another environment). A leading `python` is this interpreter, as in
    the trainer image."""
    base = os.environ.get("FTSCALE_TRAINER_CMD")
    cmd = shlex.split(base) if base else list(command or run_contract.DEFAULT_COMMAND)
    if cmd and cmd[0] == "python":
        cmd[0] = sys.executable
    return run_contract.trainer_argv(cmd, str(config_path), str(output_dir))


# ---- launchers -------------------------------------------------------------------------------
FORK, SUBPROCESS = "fork", "subprocess"


def choose_launcher(command: list[str] | None = None) -> str:
    """fork when this process can import the trainer and nothing asks otherwise (a trainer of
    your own, spec.execution.command, always runs as a subprocess)."""
    if command and list(command) != list(run_contract.DEFAULT_COMMAND):
        return SUBPROCESS
    wanted = os.environ.get("FTSCALE_LAUNCHER")
    if wanted in (FORK, SUBPROCESS):
        return wanted if wanted == SUBPROCESS or hasattr(os, "fork") else SUBPROCESS
    if os.environ.get("FTSCALE_TRAINER_CMD") or not hasattr(os, "fork"):
        return SUBPROCESS
    try:
        preload_trainer()
    except ImportError:
        return SUBPROCESS
    return FORK


def preload_trainer() -> None:
    """Import what every run imports, so forked children start warm: the trainer, torch, and
    what torch imports lazily on a run's first steps (building a model on the meta device
    routes parameter init through torch._refs, which imports torch._dynamo: seconds).
    Runs no torch operation, so no thread pool exists at fork time."""
    import ftscale_trainer.__main__  # noqa: F401
    import ftscale_trainer.train  # noqa: F401
    import torch._decomp  # noqa: F401
    import torch._dynamo  # noqa: F401
    import torch._refs  # noqa: F401


class ForkedTrainer:
    """A trainer run in a child of this process (see the module docstring); it behaves like the
    subset of subprocess.Popen the executor uses: pid, poll(), wait()."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_forked_child(argv, log_path, env)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if end is not None and time.monotonic() > end:
                raise subprocess.TimeoutExpired(f"trainer pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


def _run_forked_child(argv: list[str], log_path: Path, env: dict[str, str]) -> None:
    code = 1
    try:
        os.setsid()  # its own session: Ctrl-C reaches the parent only, killpg reaches it all
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_DFL)  # the trainer installs its own handlers
        log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Python-level streams may be wrappers of the parent's (pytest's capture, tqdm):
        # give the trainer plain line-buffered streams on the log.
        sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
        os.environ.clear()
        os.environ.update(env)
        from ftscale_trainer.__main__ import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever happens, the child must not return
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


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
    proc: Any  # subprocess.Popen or ForkedTrainer
    log: Any
    started: float
    gpus: tuple[str, ...]
    attempt: int


@dataclass
class Outcome:
    results: dict[str, RunResult]  # run id → terminal result of this session
    interrupted: bool = False
    stopped_early: str | None = None  # why no more runs were started (maxFailedRuns)
    signal: int | None = None  # the signal that interrupted the session
    stopped: dict[str, str] = field(default_factory=dict)  # run id → how its trainer stopped


class _StopSignals:
    """While active: SIGINT and SIGTERM are noted (count, first signal), never raised, so the
    executor decides when to act on them. Restores the previous handlers on exit. Outside the
    main thread, where Python cannot install handlers, it does nothing."""

    def __init__(self) -> None:
        self.first: int | None = None
        self.count = 0
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.first is None:
            self.first = signum

    def __enter__(self) -> "_StopSignals":
        try:
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._note)
        except ValueError:  # not the main thread
            pass
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Executor:
    """Starts trainer processes for `runs`, at most `parallel` at once (and never more GPUs than
    the pool has), and commits each terminal result to the workdir.

    `on_event(kind, run, result)` is called with kind "start" or "finish" (for the progress bar
    and metrics). `configs` maps run id → trainer config (runtime keys are added here)."""

    def __init__(self, workdir: Workdir, study: str, runs: list[PlannedRun],
                 configs: dict[str, dict[str, Any]], *, parallel: int, threads: int,
                 gpus: tuple[str, ...] = (), backoff_limit: int = 0,
                 deadline_seconds: float | None = None, max_failed_runs: int = -1,
                 failed_before: int = 0, launcher: str = SUBPROCESS,
                 command: list[str] | None = None,
                 budget_hours: float | None = None,
                 estimates: dict[str, float | None] | None = None,
                 spent: dict[str, float | None] | None = None, stop_grace: float | None = None,
                 on_event: Callable[[str, PlannedRun, RunResult | None], None] | None = None,
                 design: Callable[[dict[str, RunResult], list[str]], DesignDecision] | None = None,
                 finished_before: dict[str, RunResult] | None = None,
                 on_choice: Callable[[PlannedRun, str, DesignDecision], None] | None = None):
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
        self.launcher = launcher
        self.command = command
        # spec.budget.gpuHours (ftscale.budget, the operator's rule): estimated GPU-hours per
        # run, measured GPU-hours of the runs finished before this session.
        self.budget_hours = budget_hours
        self.estimates = estimates or {}
        self.spent = dict(spent or {})
        self.not_started: list[str] = []  # run ids the budget kept from starting
        self.stop_grace = stop_grace_seconds() if stop_grace is None else stop_grace
        self.signals: _StopSignals | None = None
        # spec.design (ftscale.design.decide, the operator's rule): `design(finished,
        # in_flight)` says which queued runs may start; it is asked again after every harvest
        # (the refit). Runs it leaves unstarted once its stop rule holds are not needed.
        self.design = design
        self.finished = dict(finished_before or {})
        self.on_choice = on_choice or (lambda *a: None)
        self.decision: DesignDecision | None = None
        self._fresh = False  # self.decision is up to date with the harvests
        self.retrying: set[str] = set()  # retries start whatever the design says
        self.not_needed: list[str] = []  # run ids the design's stop rule left unstarted

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
        if self.command is None:
            # Saved adapters/models go next to the result, not into the attempt folder (which
            # is dropped once the result is committed).
            config.setdefault("save_dir", str(self.workdir.run_dir(run.run_id) / "saved"))
        attempt_dir = self.workdir.prepare_attempt(run.run_id, config)
        n_gpus = self._gpus_for(run)
        gpus = tuple(self.free_gpus[:n_gpus])
        del self.free_gpus[:n_gpus]
        env = dict(os.environ)
        env["OMP_NUM_THREADS"] = str(self.threads)
        # as in a run pod (docs/run-contract.md)
        env["FTSCALE_STUDY"], env["FTSCALE_RUN_ID"] = self.study, run.run_id
        if self.all_gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""
        log_path = self.workdir.log_file(run.run_id)
        log = open(log_path, "ab")
        log.write(f"\n==== attempt {attempt} at {time.strftime('%Y-%m-%d %H:%M:%S')} "
                  f"({self.launcher}) ====\n".encode())
        log.flush()
        config_path = self.workdir.config_file(run.run_id)
        if self.launcher == FORK:
            proc = ForkedTrainer(trainer_args(config_path, attempt_dir), log_path, env)
        else:
            proc = subprocess.Popen(
                trainer_command(config_path, attempt_dir, self.command),
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
            self.retrying.add(act.run.run_id)
            self.on_event("retry", act.run, result)
            return None
        if result.wall_seconds is None:
            result = replace(result, wall_seconds=round(time.monotonic() - act.started, 3))
        if result.gpu_seconds is None:
            result = replace(result, gpu_seconds=gpu_seconds(result.wall_seconds, len(act.gpus)))
        self.workdir.commit_result(act.run.run_id, result)
        self.finished[act.run.run_id] = result
        self._fresh = False
        self.spent[act.run.run_id] = (None if result.gpu_seconds is None
                                      else result.gpu_seconds / budget.SECONDS_PER_HOUR)
        if not result.ok:
            self.failed += 1
        self.on_event("finish", act.run, result)
        return result

    def _stop_all(self, signals: _StopSignals) -> dict[str, str]:
        """Stop every trainer: SIGTERM to each process group, then SIGKILL to the groups still
        alive when the grace period ends or a further signal arrives; then SIGKILL to every
        group once more (children a trainer left behind), and reap. Returns run id → how it
        stopped."""
        how: dict[str, str] = {}
        for act in self.active.values():
            _signal_group(act.proc, signal.SIGTERM)
        # A second signal, whenever it came (even before this stop began), means "kill now".
        end = time.monotonic() + self.stop_grace
        while any(act.proc.poll() is None for act in self.active.values()):
            if signals.count > 1 or time.monotonic() >= end:
                break
            time.sleep(0.05)
        late = KILLED_ON_SECOND_SIGNAL if signals.count > 1 else KILLED_AFTER_GRACE
        for run_id, act in self.active.items():
            how[run_id] = EXITED_ON_TERM if act.proc.poll() is not None else late
            _signal_group(act.proc, signal.SIGKILL)
        for act in self.active.values():
            act.proc.wait()
            act.log.close()
        self.active.clear()
        return how

    def _within_budget(self, run: PlannedRun) -> bool:
        decision = budget.decide(self.budget_hours, [run.run_id], self.estimates, self.spent,
                                 list(self.active))
        self.budget_message = decision.message()
        return not decision.exhausted

    def _next_run(self) -> PlannedRun | None:
        """The queued run to start next: the head of the queue, or with a design the first
        run it admits (retries first). Calls on_choice with the design's reason."""
        if not self.queue:
            return None
        if self.design is None:
            return self.queue[0]
        for run in self.queue:
            if run.run_id in self.retrying:
                return run
        if not self._fresh:
            self.decision = self.design(dict(self.finished), list(self.active))
            self._fresh = True
        queued = {run.run_id: run for run in self.queue}
        for run_id in self.decision.admitted:
            if run_id in queued:
                return queued[run_id]
        return None

    def _design_stop(self) -> str | None:
        """Nothing runs and the design admits nothing queued: the runs left are not needed
        (its stop rule holds) or cannot be chosen; empties the queue and says why."""
        left = [r.run_id for r in self.queue]
        self.queue.clear()
        if self.decision is not None and self.decision.done:
            self.not_needed = left
            return self.decision.message()
        self.not_started = left
        return ("the adaptive design chose no further run"
                + (f" ({self.decision.message()})" if self.decision else ""))

    def _can_start(self, run: PlannedRun) -> bool:
        if len(self.active) >= self.parallel:
            return False
        return len(self.free_gpus) >= self._gpus_for(run)

    # -- the loop --
    def run(self) -> Outcome:
        """Run the queue to the end, or until SIGINT/SIGTERM (then stop every trainer and
        return an interrupted Outcome). Signal handlers are installed only for the call."""
        with _StopSignals() as signals:
            self.signals = signals  # what a test or a caller may look at while it runs
            try:
                return self._loop(signals)
            except BaseException:
                # Whatever went wrong here, no trainer outlives this call.
                self._stop_all(signals)
                raise

    def _loop(self, signals: _StopSignals) -> Outcome:
        results: dict[str, RunResult] = {}
        stopped = None
        try:
            while self.queue or self.active:
                if signals.first is not None:
                    how = self._stop_all(signals)
                    return Outcome(results, interrupted=True, stopped_early=stopped,
                                   signal=signals.first, stopped=how)
                if 0 <= self.max_failed < self.failed and self.queue:
                    stopped = (f"{self.failed} runs failed, more than execution.maxFailedRuns="
                               f"{self.max_failed}: no new runs were started")
                    self.queue.clear()
                while self.queue:
                    run = self._next_run()
                    if run is None or not self._can_start(run):
                        break
                    if not self._within_budget(run):
                        self.not_started = [r.run_id for r in self.queue]
                        stopped = self.budget_message
                        self.queue.clear()
                        break
                    if self.design is not None and run.run_id not in self.retrying:
                        self.on_choice(run, self.decision.reasons.get(run.run_id, ""),
                                       self.decision)
                    self.retrying.discard(run.run_id)
                    self.queue.remove(run)
                    self._start(run)
                if self.design is not None and self.queue and not self.active and \
                        self._next_run() is None:
                    stopped = self._design_stop()
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
        except KeyboardInterrupt:  # SIGINT outside the main thread's handler
            how = self._stop_all(signals)
            return Outcome(results, interrupted=True, stopped_early=stopped,
                           signal=signal.SIGINT, stopped=how)
        if signals.first is not None:  # a signal after the last run finished: nothing to stop
            return Outcome(results, interrupted=True, stopped_early=stopped,
                           signal=signals.first)
        return Outcome(results, stopped_early=stopped)


def _signal_group(proc: Any, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
