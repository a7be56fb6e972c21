"""The operator's /metrics come from the catalogue and reflect a pass."""

from __future__ import annotations

from prometheus_client import generate_latest

from ftscale import metric_names
from ftscale.controller.metrics import OPERATOR_ONLY, OperatorMetrics
from ftscale.study_metrics import STUDY_METRICS
from ftscale.controller.plan import plan

from controller_testkit import NOW, SETTINGS, STUDY, job, pod, runs, spec, succeeded


def test_every_operator_metric_is_in_the_catalogue():
    assert set(OPERATOR_ONLY) | set(STUDY_METRICS) <= set(metric_names.BY_NAME)


def test_a_pass_updates_phase_gauges_failures_and_losses():
    grid = runs()
    ok_job, ok_pod = succeeded(grid[0], loss=2.5)
    bad = job(grid[1], finished="Failed", reason="BackoffLimitExceeded")
    p = plan(STUDY, spec(), {}, grid, [ok_job, bad],
             [ok_pod, pod(bad.name, grid[1], phase="Failed", exit_code=137, reason="OOMKilled")], NOW, SETTINGS)
    m = OperatorMetrics()
    m.observe_plan("ns", "demo", p, NOW)
    m.observe_harvest_latency(0.4)
    text = generate_latest(m.registry).decode()
    series = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    assert series <= metric_names.exported_series_names() | {n + "_created" for n in metric_names.BY_NAME} | {
        "ftscale_run_failures_created", "ftscale_reconcile_errors_created"}
    assert 'ftscale_study_runs{namespace="ns",phase="Succeeded",study="demo"} 1.0' in text
    assert 'ftscale_run_failures_total{namespace="ns",reason="OOMKilled",study="demo"} 1.0' in text
    assert 'ftscale_run_test_loss{data_size="100",method="fmt",model="tiny-1",namespace="ns",pet_size="none",study="demo"} 2.5' in text
    assert "ftscale_harvest_latency_seconds_count 1.0" in text
    m.forget_study("ns", "demo")
    assert 'study="demo"' not in generate_latest(m.registry).decode()
