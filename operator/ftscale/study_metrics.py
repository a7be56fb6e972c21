"""The one writer of study metrics: the operator and `ftscale run` (namespace="local") set the
same series, with the same labels and the same aggregation, through `StudyMetrics`.

Every metric object is built from the catalogue (ftscale.metric_names); nothing here spells a
metric name's text. A test scrapes both exporters for the same results and compares.
"""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ftscale import metric_names
from ftscale.api.fit_summary import FitSummary
from ftscale.api.meta import NO_PET_SIZE_LABEL
from ftscale.api.phases import RUN_PHASES
from ftscale.results import RunResult

# Harvest latency goal is 2 s; reconcile passes take milliseconds to seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)

STUDY_METRICS = (
    "ftscale_study_runs", "ftscale_study_runs_expected", "ftscale_study_fitted",
    "ftscale_study_fit_failed", "ftscale_study_last_progress_timestamp_seconds",
    "ftscale_run_failures_total", "ftscale_run_test_loss", "ftscale_fit_parameter",
    "ftscale_study_gpu_seconds_total",
)


def build(metric: metric_names.Metric, registry: CollectorRegistry):
    """A prometheus-client object for a catalogue entry (counters lose the `_total` the client
    appends itself)."""
    if metric.kind == "counter":
        name = metric.name[: -len("_total")] if metric.name.endswith("_total") else metric.name
        return Counter(name, metric.help, metric.labels, registry=registry)
    if metric.kind == "gauge":
        return Gauge(metric.name, metric.help, metric.labels, registry=registry)
    if metric.kind == "histogram":
        return Histogram(metric.name, metric.help, metric.labels, registry=registry,
                         buckets=LATENCY_BUCKETS)
    raise ValueError(f"unknown metric kind {metric.kind!r} for {metric.name}")


def pet_size_label(size: int | None) -> str:
    return NO_PET_SIZE_LABEL if size is None else str(size)


def mean_test_losses(results: Iterable[RunResult]) -> dict[tuple[str, str, str, str], float]:
    """(model, method, pet_size label, data_size) → mean test loss over seeds, for the
    Succeeded runs (the catalogue's definition of ftscale_run_test_loss)."""
    by_condition: dict[tuple[str, str, str, str], list[float]] = {}
    for r in results:
        if r.ok and r.test_loss is not None:
            key = (r.model, r.method, pet_size_label(r.pet_size), str(r.data_size))
            by_condition.setdefault(key, []).append(float(r.test_loss))
    return {k: statistics.fmean(v) for k, v in by_condition.items()}


class StudyMetrics:
    """The per-study series, in `registry`."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.m = {name: build(metric_names.BY_NAME[name], registry) for name in STUDY_METRICS}

    def set_runs(self, namespace: str, study: str, counts: Mapping[str, int],
                 expected: int) -> None:
        """Runs by phase (every phase of RUN_PHASES, 0 when absent) and the grid size."""
        for phase in RUN_PHASES:
            self.m["ftscale_study_runs"].labels(namespace, study, phase).set(counts.get(phase, 0))
        self.m["ftscale_study_runs_expected"].labels(namespace, study).set(expected)

    def set_results(self, namespace: str, study: str, results: Iterable[RunResult]) -> None:
        """Test-loss gauges from every terminal result of the study so far."""
        for key, value in mean_test_losses(results).items():
            self.m["ftscale_run_test_loss"].labels(namespace, study, *key).set(value)

    def count_failure(self, namespace: str, study: str, reason: str | None) -> None:
        self.m["ftscale_run_failures_total"].labels(namespace, study, reason or "Unknown").inc()

    def count_gpu_seconds(self, namespace: str, study: str, seconds: float | None) -> None:
        """A finished run's GPU-seconds (0 for CPU runs: the series exists all the same)."""
        self.m["ftscale_study_gpu_seconds_total"].labels(namespace, study).inc(
            max(0.0, seconds or 0.0))

    def set_progress(self, namespace: str, study: str, timestamp: float) -> None:
        self.m["ftscale_study_last_progress_timestamp_seconds"].labels(namespace, study).set(
            timestamp)

    def set_fit(self, namespace: str, study: str, *, fitted: bool, failed: bool,
                summary: FitSummary | None = None) -> None:
        self.m["ftscale_study_fitted"].labels(namespace, study).set(1 if fitted else 0)
        self.m["ftscale_study_fit_failed"].labels(namespace, study).set(1 if failed else 0)
        if summary is not None:
            for method, factor, form, name, value in summary.parameters():
                self.m["ftscale_fit_parameter"].labels(namespace, study, method, factor, form,
                                                       name).set(value)

    def forget(self, namespace: str, study: str) -> None:
        """Drop a deleted study's series (keeps the scrape free of ghosts)."""
        for metric in self.m.values():
            for labels in list(metric._metrics):
                if labels[:2] == (namespace, study):
                    metric.remove(*labels)
