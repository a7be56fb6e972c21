"""Status conditions of a ScalingStudy: a setter that keeps lastTransitionTime when a
condition's status does not change (Kubernetes API conventions).

Types (defined in ftscale.api.phases):
- Progressing  True while runs or the fit are still to finish.
- Succeeded    True when every run is terminal, failures are within maxFailedRuns and the law
               is fitted.
- Failed       True when failures exceed maxFailedRuns once every run is terminal, or the fit
               failed / had nothing to fit.
- Fitted       True when status.fit holds the fit of the current set of results.
- Degraded     True while failed runs exceed maxFailedRuns (the study goes on; see docs).
"""

from __future__ import annotations

from typing import Any, Iterable

# Types and reasons are facts others read (kubectl, docs, tests): ftscale.api.phases owns them.
from ftscale.api.phases import (ALL_RUNS_SUCCEEDED, BUDGET_EXHAUSTED, COMPLETED, CONDITION_TYPES as TYPES,  # noqa: E402,F401
                                DEGRADED, FAILED, FIT_FAILED, FIT_IN_PROGRESS, FIT_SUCCEEDED,
                                FITTED, INVALID_SPEC, NO_SUCCESSFUL_RUNS, NOT_FINISHED,
                                PROGRESSING, RUNS_IN_PROGRESS, STUDY_TERMINAL_FAILED, SUCCEEDED,
                                TOO_MANY_FAILED_RUNS, WAITING_FOR_RUNS,
                                WITHIN_BUDGET, WITHIN_FAILURE_BUDGET, STALLED,
                                PODS_CANNOT_START, NOT_STALLED, JOB_CREATE_REFUSED,
                                PREFETCH_FAILED)

FIT_PENDING = WAITING_FOR_RUNS


def condition(kind: str, status: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    return {"type": kind, "status": "True" if status else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


def merge_conditions(old: Iterable[dict[str, Any]] | None, new: Iterable[dict[str, Any]],
                     now_text: str) -> list[dict[str, Any]]:
    """New conditions (without times) → the list to write: lastTransitionTime is carried over
    from `old` when the status did not flip, else set to `now_text`. Order follows TYPES."""
    previous = {c.get("type"): c for c in old or ()}
    out = []
    for cond in new:
        before = previous.get(cond["type"])
        changed = before is None or before.get("status") != cond["status"]
        stamp = now_text if changed else before.get("lastTransitionTime", now_text)
        out.append({**cond, "lastTransitionTime": stamp})
    out.sort(key=lambda c: TYPES.index(c["type"]) if c["type"] in TYPES else len(TYPES))
    return out
