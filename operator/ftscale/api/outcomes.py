"""How a run ends: outcomes, failure reasons, and the exit-code table every side reads.

The trainer exits with a code from EXIT_CODES; the Job's podFailurePolicy (built from this
table by `pod_failure_policy`) fails the Job at once on every non-retriable code, and the local
executor retries exactly the retriable ones — so a run behaves the same under `ftscale run` and
on a cluster. The fit Job uses the same codes (0 fitted, 2 bad input, 1 the fit failed).

Reasons are CamelCase, as Kubernetes reasons are; a Failed run result carries one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SUCCEEDED = "Succeeded"
FAILED = "Failed"
OUTCOMES = (SUCCEEDED, FAILED)

# ---- failure reasons the trainer reports (or the executor infers from its exit) ----
INVALID_CONFIG = "InvalidConfig"  # retrying cannot help
NON_FINITE_LOSS = "NonFiniteLoss"  # the same config diverges again
GPU_OUT_OF_MEMORY = "GPUOutOfMemory"  # CUDA OOM: the same config runs out again
OOM_KILLED = "OOMKilled"  # the kernel's OOM killer (host memory); may pass on another node
DEADLINE_EXCEEDED = "DeadlineExceeded"
BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
RUNTIME_ERROR = "RuntimeError"
INTERRUPTED = "Interrupted"  # SIGTERM/SIGINT: preemption, or `ftscale run` stopped
# ---- reasons only the operator gives (what it saw, not what the trainer said) ----
RESULT_MISSING = "ResultMissing"  # the Job completed but no pod with its result remains
BAD_RESULT = "BadResult"  # a termination message that is not a valid result of this run


@dataclass(frozen=True)
class ExitCode:
    code: int
    reason: str | None  # None: success
    retriable: bool  # does running the same config again have a chance?
    meaning: str


EXIT_OK = 0
EXIT_RUNTIME_ERROR = 1
EXIT_INVALID_CONFIG = 2
EXIT_NON_FINITE_LOSS = 3
EXIT_GPU_OUT_OF_MEMORY = 4
EXIT_INTERRUPTED = 143  # 128 + SIGTERM, what a shell reports for a terminated process

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, None, False, "succeeded; the result is written"),
    ExitCode(EXIT_RUNTIME_ERROR, RUNTIME_ERROR, True, "any other failure (a crash, I/O)"),
    ExitCode(EXIT_INVALID_CONFIG, INVALID_CONFIG, False,
             "invalid config or input: unknown key, bad value, a model or data set that does "
             "not exist"),
    ExitCode(EXIT_NON_FINITE_LOSS, NON_FINITE_LOSS, False,
             "the loss became NaN/inf: the same config diverges again"),
    ExitCode(EXIT_GPU_OUT_OF_MEMORY, GPU_OUT_OF_MEMORY, False,
             "CUDA out of memory: the same config on the same GPU runs out again; lower "
             "microBatchSize, enable gradientCheckpointing or give the model more GPUs"),
    ExitCode(EXIT_INTERRUPTED, INTERRUPTED, True,
             "stopped by SIGTERM/SIGINT (preemption); a checkpoint was saved when an output "
             "folder was given, and the same command resumes from it"),
)
BY_CODE = {e.code: e for e in EXIT_CODES}
BY_REASON = {e.reason: e for e in EXIT_CODES if e.reason}

# Codes after which a retry cannot help: the podFailurePolicy fails the Job on them at once.
NON_RETRIABLE_EXIT_CODES = tuple(e.code for e in EXIT_CODES if e.code != EXIT_OK
                                 and not e.retriable)
# Reasons a retry can cure (the cluster retries them up to backoffLimit; so does ftscale run).
RETRIABLE_REASONS = tuple(e.reason for e in EXIT_CODES if e.retriable) + (OOM_KILLED,)


def exit_code_for(reason: str | None) -> int:
    """The exit code a process that failed for `reason` exits with (1 for unknown reasons)."""
    if reason is None:
        return EXIT_OK
    entry = BY_REASON.get(reason)
    return entry.code if entry else EXIT_RUNTIME_ERROR


def is_retriable(reason: str | None) -> bool:
    return reason in RETRIABLE_REASONS


def pod_failure_policy(container: str) -> dict:
    """The Job's podFailurePolicy, derived from EXIT_CODES: every non-retriable exit fails the
    Job at once (no backoffLimit retries of GPU time); disruptions (preemption, eviction, node
    drain) never count against backoffLimit."""
    return {"rules": [
        {"action": "FailJob",
         "onExitCodes": {"containerName": container, "operator": "In",
                         "values": list(NON_RETRIABLE_EXIT_CODES)}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}


# ---- the termination message ----
# The kubelet copies this file into the pod status when the container ends; it keeps 4096
# bytes. Run and fit containers set terminationMessagePath to it; the trainer and the fit Job
# write their compact documents there ($TERMINATION_MESSAGE_PATH overrides, for local runs).
TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_ENV = "TERMINATION_MESSAGE_PATH"
TERMINATION_MESSAGE_LIMIT = 4096
# What our documents stay under, with room to spare.
COMPACT_LIMIT = 3000


def termination_path() -> Path | None:
    """Where this process writes its termination message: $TERMINATION_MESSAGE_PATH, else the
    Kubernetes default when it exists (inside a pod), else nowhere."""
    env = os.environ.get(TERMINATION_MESSAGE_ENV)
    if env:
        return Path(env)
    default = Path(TERMINATION_MESSAGE_PATH)
    return default if default.exists() else None


def write_termination_message(text: str) -> str | None:
    """Write `text` to the termination-message path; returns why not when it could not (a
    read-only path must not turn a good run into a failed one)."""
    path = termination_path()
    if path is None:
        return None
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        return f"could not write the termination message to {path}: {exc}"
    return None
