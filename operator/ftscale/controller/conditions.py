"""Status conditions of a ScalingStudy: types, reasons, and a setter that keeps
lastTransitionTime when a condition's status does not change (Kubernetes API conventions).

Types:
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

PROGRESSING = "Progressing"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
FITTED = "Fitted"
DEGRADED = "Degraded"
TYPES = (PROGRESSING, SUCCEEDED, FAILED, FITTED, DEGRADED)

# ---- reasons (CamelCase, machine-readable) ----
RUNS_IN_PROGRESS = "RunsInProgress"
FIT_IN_PROGRESS = "FitInProgress"
COMPLETED = "Completed"  # every run terminal and the fit done (or impossible)
ALL_RUNS_SUCCEEDED = "AllRunsSucceeded"
WITHIN_FAILURE_BUDGET = "WithinFailureBudget"
TOO_MANY_FAILED_RUNS = "TooManyFailedRuns"
FIT_SUCCEEDED = "FitSucceeded"
FIT_FAILED = "FitFailed"
FIT_PENDING = "WaitingForRuns"
NO_SUCCESSFUL_RUNS = "NoSuccessfulRuns"
INVALID_SPEC = "InvalidSpec"
NOT_FINISHED = "NotFinished"


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


def find(conditions: Iterable[dict[str, Any]] | None, kind: str) -> dict[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == kind), None)


def is_true(conditions: Iterable[dict[str, Any]] | None, kind: str) -> bool:
    found = find(conditions, kind)
    return bool(found and found.get("status") == "True")
