"""Prometheus metrics of `ftscale run --metrics-port`: the operator's study metrics through the
same writer (ftscale.study_metrics), with namespace="local", so the same dashboards and alerts
work for a laptop study and a test can compare the two scrapes series by series."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, start_http_server

from ftscale.api.fit_summary import FitSummary
from ftscale.results import RunResult
from ftscale.study_metrics import StudyMetrics

NAMESPACE = "local"


class LocalMetrics:
    """Study metrics for one local study. `port=None` keeps them in memory only (tests)."""

    def __init__(self, study: str, port: int | None = None, addr: str = "127.0.0.1"):
        self.study = study
        self.registry = CollectorRegistry()
        self.writer = StudyMetrics(self.registry)
        self.results: dict[str, RunResult] = {}
        self.server = None
        self.writer.set_fit(NAMESPACE, study, fitted=False, failed=False)
        if port is not None:
            self.server = start_http_server(port, addr=addr, registry=self.registry)

    def set_counts(self, counts: dict[str, int], expected: int) -> None:
        self.writer.set_runs(NAMESPACE, self.study, counts, expected)

    def run_finished(self, result: RunResult, *, new: bool = True) -> None:
        """Record a terminal run (`new=False` for results found on disk at start)."""
        self.results[result.run_id] = result
        if new:
            self.writer.set_progress(NAMESPACE, self.study, time.time())
            self.writer.count_gpu_seconds(NAMESPACE, self.study, result.gpu_seconds)
            if not result.ok:
                self.writer.count_failure(NAMESPACE, self.study, result.reason)
        self.writer.set_results(NAMESPACE, self.study, self.results.values())

    def fit_done(self, summary: FitSummary | None, failed: bool = False) -> None:
        self.writer.set_fit(NAMESPACE, self.study, fitted=not failed, failed=failed,
                            summary=summary)

    def close(self) -> None:
        if self.server is not None:
            server, _thread = self.server
            server.shutdown()
            self.server = None
