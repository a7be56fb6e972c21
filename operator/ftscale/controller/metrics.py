"""The operator's Prometheus metrics: the study series through the shared writer
(ftscale.study_metrics, the same one `ftscale run` uses) and the operator's own (reconcile
duration and errors, harvest latency). `OperatorMetrics.observe_plan` turns one reconcile pass
into updates; `serve` exposes /metrics.
"""

from __future__ import annotations

from typing import Any, Mapping

from prometheus_client import CollectorRegistry, start_http_server

from ftscale import metric_names
from ftscale.api.fit_summary import FitSummary, FitSummaryError
from ftscale.api.phases import FIT_FAILED_PHASE, FIT_SUCCEEDED_PHASE, FITTED
from ftscale.controller.plan import Plan
from ftscale.study_metrics import StudyMetrics, build

OPERATOR_ONLY = ("ftscale_reconcile_duration_seconds", "ftscale_reconcile_errors_total",
                 "ftscale_harvest_latency_seconds")


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.study = StudyMetrics(self.registry)
        self.m = {name: build(metric_names.BY_NAME[name], self.registry) for name in OPERATOR_ONLY}
        self._seen: set[tuple[str, str]] = set()  # studies whose gauges were set since start

    # ---- per pass ----
    def observe_plan(self, namespace: str, study: str, plan: Plan, now: float) -> None:
        """The study's run phases, results and fit as this pass decided them."""
        counts: dict[str, int] = {}
        for phase in plan.run_phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        self.study.set_runs(namespace, study, counts, len(plan.run_phases))
        for h in plan.harvested:
            self.study.count_gpu_seconds(namespace, study, h.result.gpu_seconds)
            if not h.result.ok:
                self.study.count_failure(namespace, study, h.result.reason)
        if plan.harvested:
            self.study.set_progress(namespace, study, now)
        first = (namespace, study) not in self._seen
        if plan.harvested or first:
            # After an operator restart the first pass rebuilds the loss gauges from the
            # recorded results, so dashboards do not empty out until the next result arrives.
            self.study.set_results(namespace, study, plan.results)
        fit = plan.status.get("fit") or {}
        self.study.set_fit(namespace, study, fitted=_condition_true(plan.status, FITTED),
                           failed=fit.get("phase") == FIT_FAILED_PHASE,
                           summary=_summary(plan.fit_finished if not first else fit))
        self._seen.add((namespace, study))

    def observe_harvest_latency(self, seconds: float) -> None:
        self.m["ftscale_harvest_latency_seconds"].observe(max(0.0, seconds))

    def observe_reconcile(self, seconds: float) -> None:
        self.m["ftscale_reconcile_duration_seconds"].observe(seconds)

    def observe_error(self, error: BaseException) -> None:
        self.m["ftscale_reconcile_errors_total"].labels(type(error).__name__).inc()

    def forget_study(self, namespace: str, study: str) -> None:
        self.study.forget(namespace, study)
        self._seen.discard((namespace, study))


def _summary(fit: Mapping[str, Any] | None) -> FitSummary | None:
    """The fit summary of a status.fit just harvested (None when there is none)."""
    if not fit or fit.get("phase") != FIT_SUCCEEDED_PHASE:
        return None
    try:
        return FitSummary.parse(fit)
    except FitSummaryError:
        return None  # harvest_fit already turned an unreadable summary into a Failed fit


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or ())


def serve(metrics: OperatorMetrics, port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server in a daemon thread (prometheus-client's own)."""
    start_http_server(port, addr=addr, registry=metrics.registry)
