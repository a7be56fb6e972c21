"""Prometheus metrics of `ftscale run --metrics-port`: the operator's study metrics, with
namespace="local", so the same dashboards and alerts work for a laptop study.

Every metric object is built from ftscale.metric_names.CATALOGUE (never spelled here), in a
private registry so that tests can create several exporters in one process.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from ftscale.metric_names import BY_NAME
from ftscale.results import RunResult

NAMESPACE = "local"
PHASES = ("Pending", "Queued", "Running", "Succeeded", "Failed")
_KINDS = {"counter": Counter, "gauge": Gauge, "histogram": Histogram}


def _build(registry: CollectorRegistry, name: str):
    m = BY_NAME[name]
    return _KINDS[m.kind](m.name, m.help, m.labels, registry=registry)


class LocalMetrics:
    """Study metrics for one local study. `port=None` keeps them in memory only (tests)."""

    def __init__(self, study: str, port: int | None = None, addr: str = "127.0.0.1"):
        self.study = study
        self.registry = CollectorRegistry()
        self.server = None
        self.runs = _build(self.registry, "ftscale_study_runs")
        self.expected = _build(self.registry, "ftscale_study_runs_expected")
        self.fitted = _build(self.registry, "ftscale_study_fitted")
        self.fit_failed = _build(self.registry, "ftscale_study_fit_failed")
        self.last_progress = _build(self.registry, "ftscale_study_last_progress_timestamp_seconds")
        self.failures = _build(self.registry, "ftscale_run_failures_total")
        self.test_loss = _build(self.registry, "ftscale_run_test_loss")
        self.fit_parameter = _build(self.registry, "ftscale_fit_parameter")
        self.fitted.labels(NAMESPACE, study).set(0)
        self.fit_failed.labels(NAMESPACE, study).set(0)
        if port is not None:
            self.server = start_http_server(port, addr=addr, registry=self.registry)

    def set_counts(self, counts: dict[str, int], expected: int) -> None:
        self.expected.labels(NAMESPACE, self.study).set(expected)
        for phase in PHASES:
            self.runs.labels(NAMESPACE, self.study, phase).set(counts.get(phase, 0))

    def run_finished(self, result: RunResult, *, new: bool = True) -> None:
        """Record a terminal run (`new=False` for results found on disk at start)."""
        if new:
            self.last_progress.labels(NAMESPACE, self.study).set(time.time())
        if result.ok and result.test_loss is not None:
            self.test_loss.labels(NAMESPACE, self.study, result.model, result.method,
                                  str(result.pet_size or ""), str(result.data_size)
                                  ).set(result.test_loss)
        elif not result.ok and new:
            self.failures.labels(NAMESPACE, self.study, result.reason or "Unknown").inc()

    def fit_done(self, parameters: list[dict[str, Any]] | None, failed: bool = False) -> None:
        """parameters: [{"method", "factor", "form", "parameter", "value"}] from the fit."""
        self.fit_failed.labels(NAMESPACE, self.study).set(1 if failed else 0)
        self.fitted.labels(NAMESPACE, self.study).set(0 if failed else 1)
        for p in parameters or []:
            self.fit_parameter.labels(NAMESPACE, self.study, p["method"], p["factor"], p["form"],
                                      p["parameter"]).set(p["value"])

    def close(self) -> None:
        if self.server is not None:
            server, _thread = self.server
            server.shutdown()
            self.server = None
