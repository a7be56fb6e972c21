"""The Prometheus metric catalogue: the one source of truth for every metric ftscale exports.

The operator, the trainer and `ftscale run` build their prometheus-client objects from this
table, and the Grafana dashboard and alert rules are tested against it, so renaming a metric
here (or there) fails a test. Names follow Prometheus conventions: `ftscale_` prefix, base
units, `_total` for counters, `_seconds`/`_bytes` suffixes; labels are low-cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[str, ...] = ()


STUDY = ("namespace", "study")
TRAINER = ("study", "run", "model", "method", "data_size")

CATALOGUE: tuple[Metric, ...] = (
    # ---- operator (and `ftscale run`, with namespace="local") ----
    Metric("ftscale_study_runs", "gauge",
           "Runs of a study by phase (Pending, Queued, Running, Succeeded, Failed).",
           STUDY + ("phase",)),
    Metric("ftscale_study_runs_expected", "gauge", "Runs in a study's grid.", STUDY),
    Metric("ftscale_study_fitted", "gauge",
           "1 when the study's scaling law has been fitted, else 0.", STUDY),
    Metric("ftscale_study_fit_failed", "gauge",
           "1 when the study's fit Job failed, else 0.", STUDY),
    Metric("ftscale_study_last_progress_timestamp_seconds", "gauge",
           "Unix time of the last run of the study that reached a terminal phase.", STUDY),
    Metric("ftscale_run_failures_total", "counter",
           "Runs that ended Failed, by reason (OOMKilled, DeadlineExceeded, InvalidConfig, ...).",
           STUDY + ("reason",)),
    Metric("ftscale_study_gpu_seconds_total", "counter",
           "GPU-seconds held by the study's finished runs (wall seconds × GPUs), counted as "
           "their results arrive: what spec.budget.gpuHours is spent on.", STUDY),
    Metric("ftscale_run_test_loss", "gauge",
           "Final test loss (nats/token, mean over seeds) of a finished condition.",
           STUDY + ("model", "method", "pet_size", "data_size")),
    Metric("ftscale_fit_parameter", "gauge",
           "Fitted scaling-law parameter (A, B, E, alpha, beta), unrounded.",
           STUDY + ("method", "factor", "form", "parameter")),
    Metric("ftscale_reconcile_duration_seconds", "histogram",
           "Time one reconcile pass of a study took.", ()),
    Metric("ftscale_reconcile_errors_total", "counter",
           "Reconcile passes that raised an error, by error type.", ("error",)),
    Metric("ftscale_harvest_latency_seconds", "histogram",
           "Delay from a run Job's completion to its result being written to study status.", ()),
    # ---- trainer (one series set per run pod) ----
    Metric("ftscale_trainer_step", "gauge", "Optimizer steps done.", TRAINER),
    Metric("ftscale_trainer_train_loss", "gauge",
           "Training loss (nats/target token) of the last logged step.", TRAINER),
    Metric("ftscale_trainer_eval_loss", "gauge",
           "Dev loss (nats/target token) at the last evaluation.", TRAINER),
    Metric("ftscale_trainer_best_eval_loss", "gauge",
           "Best dev loss so far (the checkpoint that will be reported).", TRAINER),
    Metric("ftscale_trainer_tokens_per_second", "gauge",
           "Training throughput over the last logging interval.", TRAINER),
    Metric("ftscale_trainer_tokens_seen_total", "counter", "Tokens fed forward in training.",
           TRAINER),
    Metric("ftscale_trainer_learning_rate", "gauge", "Current learning rate.", TRAINER),
    Metric("ftscale_trainer_gpu_memory_bytes", "gauge",
           "Peak GPU memory allocated by torch on this process's device.", TRAINER),
)

BY_NAME = {m.name: m for m in CATALOGUE}


def exported_series_names() -> set[str]:
    """Every series name a scrape can show (histograms add _bucket/_sum/_count, counters _total)."""
    names = set()
    for m in CATALOGUE:
        if m.kind == "histogram":
            names |= {m.name + "_bucket", m.name + "_sum", m.name + "_count"}
        else:
            names.add(m.name)
    return names
