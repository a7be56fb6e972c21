"""Harvest: a finished run Job and its pods → the run's outcome (a RunResult), pure.

The trainer writes its compact result JSON to the termination-message path; the kubelet puts
it in the pod status, where the operator reads it (no volume, no API access from the pod).
When the trainer could not report (killed, crashed, out of time), the reason comes from the
Job and pod status instead, in this order of specificity:

1. the trainer's own Failed result (e.g. NonFiniteLoss) — it knows best;
2. the container was OOMKilled;
3. a non-retriable exit code (ftscale.api.outcomes: invalid config, non-finite loss, CUDA out
   of memory) — the podFailurePolicy failed the Job at once;
4. the Job's DeadlineExceeded (activeDeadlineSeconds);
5. the Job's BackoffLimitExceeded (retries spent) — with the last pod's exit code/log tail;
6. anything else: RuntimeError with the Job's own message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable

from ftscale import results as rc
from ftscale.api import outcomes as oc
from ftscale.api.fit_summary import FitSummary, FitSummaryError, fit_status
from ftscale.api.phases import FIT_FAILED_PHASE, FIT_SUCCEEDED_PHASE, NOTHING_TO_FIT
from ftscale.controller.observe import JobView, PodView
from ftscale.identity import RunKey

# How much of a non-JSON termination message (FallbackToLogsOnError: the log tail) to keep.
MESSAGE_LIMIT = 400


@dataclass(frozen=True)
class Harvest:
    """What harvesting a terminal Job gave: the result, or None while we wait for the pod."""

    result: rc.RunResult | None
    finished_at: float | None  # when the Job finished (for the harvest-latency metric)
    waiting: bool = False  # True: the Job finished but its pod is not in the cache yet


def _short(text: str | None, limit: int = MESSAGE_LIMIT) -> str | None:
    if not text:
        return None
    text = text.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


def _identity(study: str, key: RunKey) -> dict[str, Any]:
    return dict(study=study, run_id=key.run_id, model=key.model, method=key.method,
                pet_size=key.pet_size, data_size=key.data_size, seed=key.seed)


def failed_result(study: str, key: RunKey, reason: str, message: str | None,
                  x_values: dict[str, Any] | None = None) -> rc.RunResult:
    """A Failed RunResult for a run that could not report one itself."""
    return rc.RunResult(**_identity(study, key), **(x_values or {}), outcome=rc.FAILED,
                        reason=reason, message=_short(message))


def parse_termination_message(study: str, key: RunKey, text: str | None) -> tuple[rc.RunResult | None, str | None]:
    """(result, problem): the result when `text` is a valid result document of this very run,
    else None and why (not JSON / wrong run / contract violation)."""
    if not text:
        return None, "empty termination message"
    stripped = text.strip()
    if not stripped.startswith("{"):
        return None, "termination message is not a result document"
    try:
        result = rc.parse_result(stripped)
    except rc.ResultError as exc:
        return None, f"invalid result: {exc}"
    problem = rc.identity_problem(result, key)
    if problem is not None:
        return None, f"result rejected: {problem}"
    return result, None


def harvest_run(study: str, key: RunKey, job: JobView, pods: Iterable[PodView], now: float,
                grace_seconds: float, x_values: dict[str, Any] | None = None,
                nodes: int = 1) -> Harvest:
    """The outcome of a terminal run Job. Precondition: job.terminal.

    `pods` are the cached pods of this Job (any order). `x_values` (model_params,
    pretrain_tokens) fill the X columns of results the operator has to write itself. `nodes`:
    the pods one attempt of the run has (models[].nodes); on several, only global rank 0 (pod
    index 0) writes a result, the others end with an empty message.
    """
    own = [p for p in pods if p.job == job.name or (p.job is None and p.run_id == key.run_id)]
    own.sort(key=lambda p: (p.finished_at or 0.0, p.name))
    if job.finished == "Complete":
        done = [p for p in own if p.phase == "Succeeded" or p.exit_code == 0]
        problems = []
        for pod in done:  # the first pod that reported this run's result
            result, problem = parse_termination_message(study, key, pod.message)
            if result is not None:
                return Harvest(result, job.finished_at)
            problems.append((pod, problem))
        if problems:
            # No valid result: name the pod that wrote something (the ranks > 0 write nothing),
            # else the last one — on one pod, simply that pod.
            pod, problem = next(((p, why) for p, why in reversed(problems) if p.message),
                                problems[-1])
            return Harvest(failed_result(study, key, oc.BAD_RESULT, f"{problem}: {_short(pod.message, 200)}",
                                         x_values), job.finished_at)
        since = now - (job.finished_at or now)
        if since < grace_seconds:
            return Harvest(None, job.finished_at, waiting=True)
        return Harvest(failed_result(study, key, oc.RESULT_MISSING,
                                     "the Job completed but no pod with its result remains",
                                     x_values), job.finished_at)

    # Failed Job: find the most telling pod (the last one that ran to termination, not disrupted).
    ran = [p for p in own if p.exit_code is not None or p.phase == "Failed"]
    last = next((p for p in reversed(ran) if not p.disrupted), ran[-1] if ran else None)
    # The trainer's own verdict: the last pod's; on several nodes, that of any pod of the last
    # attempt (its `nodes` pods fail together, and only rank 0's carries a result).
    attempt = [p for p in ran if not p.disrupted][-max(1, nodes):] if nodes > 1 else [last]
    for pod in reversed([p for p in attempt if p is not None]):
        result, _ = parse_termination_message(study, key, pod.message)
        if result is not None and not result.ok:
            return Harvest(result, job.finished_at)
    reason, message = failure_reason(job, last)
    return Harvest(failed_result(study, key, reason, message, x_values), job.finished_at)


def harvest_succeeded_pod(study: str, key: RunKey, job_name: str, pods: Iterable[PodView]) -> Harvest | None:
    """Early harvest: a pod of an unfinished run Job that exited 0 with a valid result of this
    run. With completions=1 that pod *is* the Job's success (the Job controller marks the Job
    Complete a moment later — after its ~1 s batching), so the result can be recorded now. On
    several nodes it is rank 0's pod, which reports only once training and evaluation are done
    on every rank; the other pods' empty messages are no result. None when there is no such
    pod (the Job's own verdict is awaited)."""
    for pod in pods:
        if pod.job != job_name or pod.phase != "Succeeded" or pod.exit_code != 0:
            continue
        result, _ = parse_termination_message(study, key, pod.message)
        if result is not None and result.ok:
            return Harvest(result, pod.finished_at)
    return None


def failure_reason(job: JobView, last: PodView | None) -> tuple[str, str]:
    """(reason, message) of a Failed Job from its condition and its last pod (see module doc)."""
    tail = _short(last.message) if last is not None else None
    if last is not None and last.reason == "OOMKilled":
        return oc.OOM_KILLED, f"container was OOMKilled (exit code {last.exit_code}); " \
                              f"give the model more memory (spec.models[].resources)"
    if last is not None and last.exit_code in oc.NON_RETRIABLE_EXIT_CODES:
        # The podFailurePolicy failed the Job on this code at once; the table names the reason.
        entry = oc.BY_CODE[last.exit_code]
        return entry.reason, tail or f"exit code {entry.code}: {entry.meaning}"
    if job.finished_reason == "DeadlineExceeded":
        return oc.DEADLINE_EXCEEDED, job.finished_message or "activeDeadlineSeconds exceeded"
    if job.finished_reason in ("BackoffLimitExceeded", "PodFailurePolicy"):
        detail = f"; last exit code {last.exit_code}" if last is not None and last.exit_code is not None else ""
        base = job.finished_message or "retries exhausted"
        return oc.BACKOFF_LIMIT_EXCEEDED, f"{base}{detail}" + (f": {tail}" if tail else "")
    return oc.RUNTIME_ERROR, job.finished_message or tail or f"Job failed ({job.finished_reason})"


# ---- the fit Job ----------------------------------------------------------------------------


def _fit_from_pod(pod: PodView, job: JobView) -> dict[str, Any]:
    try:
        summary = FitSummary.parse(pod.message or "")
    except FitSummaryError as exc:
        return fit_status(job.name, job.fit_digest, FIT_FAILED_PHASE, reason=oc.BAD_RESULT,
                          message=f"{exc}: {_short(pod.message, 200)}")
    return fit_status(job.name, job.fit_digest, FIT_SUCCEEDED_PHASE, summary=summary,
                      message=summary.headline())


def harvest_fit(job: JobView, pods: Iterable[PodView], now: float, grace_seconds: float) -> dict[str, Any] | None:
    """The fit Job's outcome as a status.fit document (ftscale.api.fit_summary.fit_status), or
    None while there is none yet.

    Succeeded: the fit summary the law job wrote to its termination message — taken as soon as
    the fit pod exited 0, like a run's early harvest. Failed (the Job's verdict): reason and
    message (the log tail).
    """
    own = sorted((p for p in pods if p.job == job.name), key=lambda p: (p.finished_at or 0.0, p.name))
    for pod in reversed(own):
        if pod.phase == "Succeeded" and pod.exit_code == 0:
            return _fit_from_pod(pod, job)
    if not job.terminal:
        return None
    if job.finished == "Complete":
        if now - (job.finished_at or now) < grace_seconds:
            return None
        return fit_status(job.name, job.fit_digest, FIT_FAILED_PHASE, reason=oc.RESULT_MISSING,
                          message="the fit Job completed but its pod is gone")
    ran = [p for p in own if p.exit_code is not None or p.phase == "Failed"]
    last = ran[-1] if ran else None
    reason, message = failure_reason(job, last)
    if reason == oc.INVALID_CONFIG:
        # The operator writes the fit input itself: the fit Job's "bad input" exit means the
        # results cannot be fitted — what `ftscale run` reports for the same results.
        reason = NOTHING_TO_FIT
    return fit_status(job.name, job.fit_digest, FIT_FAILED_PHASE, reason=reason, message=message)
