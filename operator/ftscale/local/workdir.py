"""The `ftscale run` working directory: where configs, logs and results live, and what state
each run is in. Everything `ftscale run` knows after a restart it reads from here.

Layout (docs/study.md):

    WORKDIR/
      .lock                    held (flock) by the `ftscale run` using the workdir; holds its PID
      study.yaml               the study as first run here (defaults applied); resume checks it
      runs/<run id>/
        config.json            the trainer config of the run
        attempt/               the trainer's --output while it runs (removed after harvest;
                               a checkpoint/ saved on Ctrl-C is kept so the run resumes)
        train.log              the trainer's stdout and stderr (appended per attempt)
        result.json            the full result; written atomically only once a run is over,
                               so its presence means "terminal" and a partial file cannot occur
                               by our hand — an unreadable one is reported and quarantined
      results.jsonl            one compact result per line (for `ftscale fit` and spreadsheets)
      fit.json, report.md, plots/*.png

State of a run (`run_state`): DONE, FAILED, CORRUPT, INTERRUPTED, NEW. A result whose identity
does not match its folder counts as CORRUPT: it is never silently used.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ftscale.identity import RunKey
from ftscale.results import ResultError, RunResult, identity_problem, parse_result

DONE = "done"  # a Succeeded result: skipped on resume
FAILED = "failed"  # a Failed result: skipped on resume unless --retry-failed
CORRUPT = "corrupt"  # result.json unreadable or not this run's: quarantined and re-run
INTERRUPTED = "interrupted"  # started but never finished (Ctrl-C, crash, power loss): re-run
NEW = "new"  # never started

# The folder ftscale_trainer saves on SIGTERM and resumes from (`--output DIR/checkpoint`).
RESUME_CHECKPOINT = "checkpoint"


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir's lock. `.pid` is its PID (None if unreadable)."""

    def __init__(self, root: Path, pid: int | None):
        self.root, self.pid = root, pid
        who = f"pid {pid}" if pid else "another process"
        super().__init__(f"{root} is in use by another `ftscale run` ({who}); wait for it to "
                         f"finish, stop it (kill -INT {pid or '<pid>'}; it resumes later), or "
                         "use another --workdir")


class WorkdirLock:
    """An exclusive flock on WORKDIR/.lock for as long as one `ftscale run` uses the workdir.

    Two runs on one workdir would start every run twice and delete each other's attempts. The
    lock is the kernel's: released when the holder exits, however it exits (a crash, SIGKILL,
    a power cut), so a stale lock file never blocks — only a live holder does. The file holds
    the holder's PID for the message. Trainers forked by the holder close their copy of the
    descriptor (os.register_at_fork), so a trainer that outlives its parent does not keep
    the workdir locked."""

    FILE = ".lock"

    def __init__(self, root: Path):
        self.path = Path(root) / self.FILE
        self.fd: int | None = None

    def acquire(self) -> "WorkdirLock":
        """Take the lock or raise WorkdirBusy at once (never waits)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirBusy(self.path.parent, _read_pid(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd
        _HELD_LOCK_FDS.add(fd)
        return self

    def release(self) -> None:
        if self.fd is not None:
            _HELD_LOCK_FDS.discard(self.fd)
            os.close(self.fd)  # closing the last descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# Lock descriptors this process holds; a forked child (a trainer of the fork launcher) closes
# its copies, which leaves the parent's lock as it is (flock belongs to the open file, and the
# parent still has it open).
_HELD_LOCK_FDS: set[int] = set()


def _close_lock_fds_in_child() -> None:
    for fd in list(_HELD_LOCK_FDS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCK_FDS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_lock_fds_in_child)


@dataclass(frozen=True)
class RunState:
    state: str
    result: RunResult | None = None
    problem: str | None = None  # why a result is CORRUPT


def write_atomic(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a torn one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def check_identity(result: RunResult, key: RunKey, run_id: str) -> str | None:
    """Why a result is not the result of this run (None when it is): the contract's check
    (ftscale.results.identity_problem), the one the operator's harvest makes too."""
    if run_id != key.run_id:
        return f"run id {run_id} is not the id of {key}"
    return identity_problem(result, key)


class Workdir:
    """Paths and state of one `ftscale run` working directory."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # ---- paths -------------------------------------------------------------------------------
    @property
    def study_file(self) -> Path:
        return self.root / "study.yaml"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def result_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "result.json"

    def attempt_dir(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "attempt"

    def log_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "train.log"

    def config_file(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "config.json"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def report_file(self) -> Path:
        return self.root / "report.md"

    @property
    def fit_file(self) -> Path:
        return self.root / "fit.json"

    @property
    def fit_status_file(self) -> Path:
        """What a cluster study's status.fit holds, for the same results (ftscale.api)."""
        return self.root / "fit-status.json"

    @property
    def results_table(self) -> Path:
        return self.root / "results.jsonl"

    def lock(self) -> WorkdirLock:
        """The workdir's lock, to use as `with wd.lock():` (raises WorkdirBusy)."""
        return WorkdirLock(self.root)

    # ---- the study -----------------------------------------------------------------------------
    def recorded_manifest(self) -> dict[str, Any] | None:
        """The study this workdir was started with, or None for a fresh workdir."""
        if not self.study_file.is_file():
            return None
        return yaml.safe_load(self.study_file.read_text())

    def record_manifest(self, manifest: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.study_file, "# The study as `ftscale run` runs it here (CRD defaults "
                     "applied). Resuming checks edits against it.\n"
                     + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True))

    # ---- runs --------------------------------------------------------------------------------
    def run_state(self, key: RunKey, run_id: str) -> RunState:
        """Classify one run from what is on disk (pure read; changes nothing)."""
        result_path = self.result_file(run_id)
        if result_path.is_file():
            try:
                result = parse_result(result_path.read_bytes())
            except ResultError as exc:
                return RunState(CORRUPT, problem=str(exc))
            mismatch = check_identity(result, key, run_id)
            if mismatch:
                return RunState(CORRUPT, problem=mismatch)
            return RunState(DONE if result.ok else FAILED, result=result)
        if self.run_dir(run_id).exists():
            return RunState(INTERRUPTED)
        return RunState(NEW)

    def quarantine(self, run_id: str) -> Path:
        """Move an unusable result aside (kept for inspection) so the run is redone."""
        src = self.result_file(run_id)
        dst = src.with_name(f"result.json.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(src, dst)
        return dst

    def prepare_attempt(self, run_id: str, config: dict[str, Any]) -> Path:
        """The attempt folder and the run's config; returns the attempt folder. Whatever an
        earlier attempt left is removed, except a checkpoint/ the trainer saved when it was
        stopped (SIGTERM): the trainer resumes from it instead of starting over."""
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        attempt = self.attempt_dir(run_id)
        if attempt.exists():
            for child in attempt.iterdir():
                if child.name == RESUME_CHECKPOINT and child.is_dir():
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        attempt.mkdir(exist_ok=True)
        write_atomic(self.config_file(run_id), json.dumps(config, indent=2, sort_keys=True))
        return attempt

    def commit_result(self, run_id: str, result: RunResult) -> None:
        """Make a run terminal: write its result atomically, then drop the attempt folder."""
        write_atomic(self.result_file(run_id), result.to_full_json())
        attempt = self.attempt_dir(run_id)
        if attempt.exists():
            shutil.rmtree(attempt, ignore_errors=True)

    def all_results(self) -> dict[str, RunResult]:
        """Every readable result in the workdir, by run id (unreadable ones are skipped; the
        run executor reports and redoes them)."""
        out = {}
        if not self.runs_dir.is_dir():
            return out
        for path in sorted(self.runs_dir.glob("*/result.json")):
            try:
                result = parse_result(path.read_bytes())
            except ResultError:
                continue
            if result.run_id == path.parent.name:
                out[result.run_id] = result
        return out

    def write_results_table(self, results: list[RunResult]) -> None:
        lines = [r.to_compact_json() for r in sorted(results, key=lambda r: r.run_id)]
        write_atomic(self.results_table, "".join(line + "\n" for line in lines))
