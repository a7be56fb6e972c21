"""What the study browser's pages show, as plain frozen values built from ScalingStudy objects
as the operator caches them (the raw watch bodies). Pure: no API, no aiohttp, no templates —
the pages' tests build them from statuses that ftscale.controller.plan wrote.

Every string a study author or a run wrote (names, failure messages, condition messages, skip
reasons) is kept as plain text here; the templates escape it (Jinja2 autoescaping).
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ftscale.api.fit_summary import FitSummary, FitSummaryError
from ftscale.api.status import MESSAGE_LIMIT
from ftscale.results import RunResult
from ftscale.api.phases import FIT_SUCCEEDED_PHASE, STUDY_PENDING

# The Grafana dashboard's uid (monitoring/dashboard.py DASHBOARD_UID; a test keeps them
# equal). The operator image does not carry monitoring/, hence the copy.
GRAFANA_DASHBOARD_UID = "ftscale-studies"
SECONDS_PER_HOUR = 3600.0
# Fitted parameters in the order the laws table shows them, with their symbols.
PARAMETERS = (("A", "A"), ("alpha", "α"), ("beta", "β"), ("E", "E"), ("B", "B"))


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def study_key(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")


def study_url(namespace: str, name: str) -> str:
    return f"/studies/{urllib.parse.quote(namespace, safe='')}/{urllib.parse.quote(name, safe='')}"


def grafana_link(base: str, namespace: str, name: str) -> str | None:
    """The ftscale dashboard filtered to one study (its `namespace` and `study` variables);
    None without a Grafana base URL, or with one that is not http(s) (a javascript: URL in an
    href would run when clicked)."""
    base = (base or "").strip().rstrip("/")
    if not base.lower().startswith(("http://", "https://")):
        return None
    query = urllib.parse.urlencode({"var-namespace": namespace, "var-study": name})
    return f"{base}/d/{GRAFANA_DASHBOARD_UID}?{query}"


# ---- the list ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class StudyRow:
    """One study in the list (and the head of its page)."""

    namespace: str
    name: str
    url: str
    phase: str
    progress: str  # "terminal/total", as kubectl shows it
    total: int
    succeeded: int
    failed: int
    running: int
    queued: int
    pending: int
    gpu_hours: float | None  # status.gpuHoursSpent
    fitted: bool  # status.fit holds a succeeded fit
    fit_phase: str | None  # Succeeded | Failed | None (no fit yet)
    behind: bool  # the status is of an older generation than the spec (not reconciled yet)


def study_row(body: Mapping[str, Any]) -> StudyRow:
    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    namespace, name = study_key(body)
    fit = status.get("fit") or {}
    total, succeeded, failed = (_int(status.get("runsTotal")), _int(status.get("runsSucceeded")),
                                _int(status.get("runsFailed")))
    observed = status.get("observedGeneration")
    return StudyRow(
        namespace=namespace, name=name, url=study_url(namespace, name),
        phase=str(status.get("phase") or STUDY_PENDING),
        progress=str(status.get("progress") or f"{succeeded + failed}/{total}"),
        total=total, succeeded=succeeded, failed=failed,
        running=_int(status.get("runsRunning")), queued=_int(status.get("runsQueued")),
        pending=_int(status.get("runsPending")),
        gpu_hours=_float(status.get("gpuHoursSpent")),
        fitted=fit.get("phase") == FIT_SUCCEEDED_PHASE,
        fit_phase=fit.get("phase") or None,
        behind=observed is not None and meta.get("generation") is not None
        and observed != meta.get("generation"))


def study_rows(bodies: Iterable[Mapping[str, Any]]) -> list[StudyRow]:
    """Every study, by namespace and name."""
    return sorted((study_row(b) for b in bodies), key=lambda r: (r.namespace, r.name))


def find_study(bodies: Iterable[Mapping[str, Any]], namespace: str,
               name: str) -> Mapping[str, Any] | None:
    return next((b for b in bodies if study_key(b) == (namespace, name)), None)


# ---- one study ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConditionRow:
    type: str
    status: str
    reason: str
    message: str
    since: str  # lastTransitionTime


@dataclass(frozen=True)
class RunRow:
    """A terminal run, from its recorded result (the results ConfigMaps)."""

    run_id: str
    model: str
    method: str
    pet_size: int | None
    data_size: int | None
    seed: int | None
    phase: str
    test_loss: float | None
    gpu_hours: float | None
    reason: str
    message: str


@dataclass(frozen=True)
class Parameter:
    symbol: str
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class LawRow:
    method: str
    factor: str
    form: str
    parameters: tuple[Parameter, ...]  # PARAMETERS order; value None where the form has none
    delta_fit: float | None
    delta_heldout: float | None
    converged: bool
    flags: tuple[str, ...]


@dataclass(frozen=True)
class CriticalRow:
    methods: str  # "fmt vs lora"
    factor: str
    x: float | None
    data_sizes: tuple[float, ...]  # empty: the laws do not cross in the searched range


@dataclass(frozen=True)
class FitView:
    """status.fit, as the fit Job summarised it (ftscale.api.fit_summary)."""

    phase: str | None
    reason: str
    message: str
    job: str
    input_digest: str
    laws: tuple[LawRow, ...]
    critical: tuple[CriticalRow, ...]
    better_form: str | None
    skipped: tuple[tuple[str, str, str], ...]  # (method, factor, reason)
    dropped: tuple[str, ...]  # detail the summary left out to fit in 4 KB
    error: str | None  # status.fit could not be read (another schema)


@dataclass(frozen=True)
class StudyPage:
    row: StudyRow
    uid: str
    task: str
    conditions: tuple[ConditionRow, ...]
    runs: tuple[RunRow, ...]
    unfinished: int  # runs without a result yet (running, queued, pending)
    fit: FitView | None
    budget_hours: float | None  # spec.budget.gpuHours
    planned_hours: float | None  # status.plan.gpuHours: the cost plan's estimate
    grafana_url: str | None
    report_url: str


def run_rows(results: Iterable[RunResult]) -> tuple[RunRow, ...]:
    """Rows in a stable order: model, method, PET size, data size, seed."""
    def order(r: RunResult):
        return (r.model, r.method, r.pet_size or 0, r.data_size, r.seed)

    return tuple(RunRow(
        run_id=r.run_id, model=r.model, method=r.method, pet_size=r.pet_size,
        data_size=r.data_size, seed=r.seed, phase=r.outcome, test_loss=_float(r.test_loss),
        gpu_hours=None if r.gpu_seconds is None else r.gpu_seconds / SECONDS_PER_HOUR,
        reason=r.reason or "", message=(r.message or "")[:MESSAGE_LIMIT])
        for r in sorted(results, key=order))


def condition_rows(status: Mapping[str, Any]) -> tuple[ConditionRow, ...]:
    return tuple(ConditionRow(str(c.get("type", "")), str(c.get("status", "")),
                              str(c.get("reason") or ""), str(c.get("message") or ""),
                              str(c.get("lastTransitionTime") or ""))
                 for c in status.get("conditions") or ())


def fit_view(fit: Mapping[str, Any] | None) -> FitView | None:
    """status.fit → FitView; None when there is no fit yet. A summary of another schema shows
    its phase and message with the parse error instead of its laws."""
    if not fit or not fit.get("phase"):
        return None
    head = dict(phase=fit.get("phase"), reason=str(fit.get("reason") or ""),
                message=str(fit.get("message") or ""), job=str(fit.get("job") or ""),
                input_digest=str(fit.get("inputDigest") or ""))
    if fit.get("phase") != FIT_SUCCEEDED_PHASE:
        return FitView(**head, laws=(), critical=(), better_form=None, skipped=(), dropped=(),
                       error=None)
    try:
        summary = FitSummary.parse(fit)
    except FitSummaryError as exc:
        return FitView(**head, laws=(), critical=(), better_form=None, skipped=(), dropped=(),
                       error=str(exc))
    laws = tuple(LawRow(
        law.method, law.factor, law.form,
        tuple(Parameter(symbol, law.params.get(name),
                        *(law.intervals.get(name) or (None, None)))
              for name, symbol in PARAMETERS),
        law.delta_fit, law.delta_heldout, law.converged, tuple(law.flags))
        for law in summary.laws)
    critical = tuple(CriticalRow(" vs ".join(c.methods), c.factor, c.x, tuple(c.data_sizes))
                     for c in summary.critical)
    return FitView(**head, laws=laws, critical=critical, better_form=summary.better_form,
                   skipped=tuple((s.method, s.factor, s.reason) for s in summary.skipped),
                   dropped=tuple(summary.dropped), error=None)


def study_page(body: Mapping[str, Any], results: Iterable[RunResult] = (),
               grafana_base: str = "") -> StudyPage:
    """The study page: the cached study and its recorded results (the results ConfigMaps)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    row = study_row(body)
    runs = run_rows(results)
    return StudyPage(
        row=row, uid=str(meta.get("uid") or ""),
        task=str((spec.get("task") or {}).get("name") or ""),
        conditions=condition_rows(status), runs=runs,
        unfinished=max(0, row.total - len(runs)),
        fit=fit_view(status.get("fit")),
        budget_hours=_float((spec.get("budget") or {}).get("gpuHours")),
        planned_hours=_float((status.get("plan") or {}).get("gpuHours")),
        grafana_url=grafana_link(grafana_base, row.namespace, row.name),
        report_url=row.url + "/report")
