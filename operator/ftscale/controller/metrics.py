"""The operator's Prometheus metrics, built from the catalogue (ftscale.metric_names) — no
metric name is spelled here. `OperatorMetrics.observe_plan` turns one reconcile pass into
gauge/counter updates; `serve` exposes /metrics.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ftscale import metric_names
from ftscale.controller.plan import RUN_PHASES, Plan

# Harvest latency goal is 2 s; reconcile passes take milliseconds to seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def _build(metric: metric_names.Metric, registry: CollectorRegistry):
    # prometheus-client appends _total to counters itself: strip it from the catalogue name.
    if metric.kind == "counter":
        name = metric.name[: -len("_total")] if metric.name.endswith("_total") else metric.name
        return Counter(name, metric.help, metric.labels, registry=registry)
    if metric.kind == "gauge":
        return Gauge(metric.name, metric.help, metric.labels, registry=registry)
    if metric.kind == "histogram":
        return Histogram(metric.name, metric.help, metric.labels, registry=registry,
                         buckets=LATENCY_BUCKETS)
    raise ValueError(f"unknown metric kind {metric.kind!r} for {metric.name}")


OPERATOR_METRICS = (
    "ftscale_study_runs", "ftscale_study_runs_expected", "ftscale_study_fitted",
    "ftscale_study_fit_failed", "ftscale_study_last_progress_timestamp_seconds",
    "ftscale_run_failures_total", "ftscale_run_test_loss", "ftscale_fit_parameter",
    "ftscale_reconcile_duration_seconds", "ftscale_reconcile_errors_total",
    "ftscale_harvest_latency_seconds",
)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.m = {name: _build(metric_names.BY_NAME[name], self.registry) for name in OPERATOR_METRICS}

    # ---- per pass ----
    def observe_plan(self, namespace: str, study: str, plan: Plan, now: float) -> None:
        """Gauges of the study's run phases and fit; counters/histograms for what was harvested."""
        counts = {phase: 0 for phase in RUN_PHASES}
        for phase in plan.run_phases.values():
            counts[phase] = counts.get(phase, 0) + 1
        for phase, n in counts.items():
            self.m["ftscale_study_runs"].labels(namespace, study, phase).set(n)
        self.m["ftscale_study_runs_expected"].labels(namespace, study).set(len(plan.run_phases))
        fitted = _condition_true(plan.status, "Fitted")
        self.m["ftscale_study_fitted"].labels(namespace, study).set(1 if fitted else 0)
        fit = plan.status.get("fit") or {}
        self.m["ftscale_study_fit_failed"].labels(namespace, study).set(
            1 if fit.get("phase") == "Failed" else 0)
        for h in plan.harvested:
            if not h.result.ok:
                self.m["ftscale_run_failures_total"].labels(namespace, study, h.result.reason or "Unknown").inc()
        if plan.harvested:
            self.m["ftscale_study_last_progress_timestamp_seconds"].labels(namespace, study).set(now)
            self._losses(namespace, study, plan.status.get("results") or ())
        if plan.fit_finished and plan.fit_finished.get("phase") == "Succeeded":
            self._fit_parameters(namespace, study, plan.fit_finished)

    def observe_harvest_latency(self, seconds: float) -> None:
        self.m["ftscale_harvest_latency_seconds"].observe(max(0.0, seconds))

    def observe_reconcile(self, seconds: float) -> None:
        self.m["ftscale_reconcile_duration_seconds"].observe(seconds)

    def observe_error(self, error: BaseException) -> None:
        self.m["ftscale_reconcile_errors_total"].labels(type(error).__name__).inc()

    def forget_study(self, namespace: str, study: str) -> None:
        """Drop a deleted study's series (keeps the scrape free of ghosts)."""
        for name in OPERATOR_METRICS:
            metric = self.m[name]
            if not metric._labelnames[:2] == ("namespace", "study"):
                continue
            for labels in list(metric._metrics):
                if labels[:2] == (namespace, study):
                    metric.remove(*labels)

    # ---- helpers ----
    def _losses(self, namespace: str, study: str, entries: Iterable[Mapping[str, Any]]) -> None:
        """Mean test loss over seeds per condition (the catalogue's definition)."""
        sums: dict[tuple, list[float]] = {}
        for e in entries:
            if e.get("phase") != "Succeeded" or e.get("testLoss") is None:
                continue
            key = (e.get("model", ""), e.get("method", ""),
                   "none" if e.get("petSize") is None else str(e["petSize"]), str(e.get("dataSize")))
            sums.setdefault(key, []).append(float(e["testLoss"]))
        for key, values in sums.items():
            self.m["ftscale_run_test_loss"].labels(namespace, study, *key).set(sum(values) / len(values))

    def _fit_parameters(self, namespace: str, study: str, fit: Mapping[str, Any]) -> None:
        for method, factor, form, params in iter_fit_parameters(fit):
            for name, value in params.items():
                self.m["ftscale_fit_parameter"].labels(namespace, study, method, factor, form, name).set(value)


def iter_fit_parameters(fit: Mapping[str, Any]):
    """(method, factor, form, {parameter: value}) from a fit summary, tolerant of its layout:
    a list of `fits` entries with method/factor/form/params, or nested
    {method: {factor: {form: {params}}}} under `laws`."""
    for entry in fit.get("fits") or ():
        if not isinstance(entry, Mapping):
            continue
        params = entry.get("params") or entry.get("parameters") or {}
        yield (str(entry.get("method")), str(entry.get("factor")), str(entry.get("form")),
               {k: float(v) for k, v in params.items() if _finite(v)})
    laws = fit.get("laws")
    if isinstance(laws, Mapping):
        for method, by_factor in laws.items():
            for factor, by_form in (by_factor or {}).items():
                for form, params in (by_form or {}).items():
                    if isinstance(params, Mapping):
                        values = params.get("params", params)
                        yield (method, factor, form,
                               {k: float(v) for k, v in values.items() if _finite(v)})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or ())


def serve(metrics: OperatorMetrics, port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server in a daemon thread (prometheus-client's own)."""
    start_http_server(port, addr=addr, registry=metrics.registry)
