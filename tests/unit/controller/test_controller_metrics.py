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
        "ftscale_run_failures_created", "ftscale_reconcile_errors_created",
        "ftscale_study_gpu_seconds_created"}
    assert 'ftscale_study_runs{namespace="ns",phase="Succeeded",study="demo"} 1.0' in text
    assert 'ftscale_run_failures_total{namespace="ns",reason="OOMKilled",study="demo"} 1.0' in text
    assert 'ftscale_run_test_loss{data_size="100",method="fmt",model="tiny-1",namespace="ns",pet_size="none",study="demo"} 2.5' in text
    assert "ftscale_harvest_latency_seconds_count 1.0" in text
    m.forget_study("ns", "demo")
    assert 'study="demo"' not in generate_latest(m.registry).decode()


def test_a_restarted_operator_rebuilds_loss_and_fit_gauges_from_the_recorded_results():
    """After a restart nothing is harvested anew, yet the first pass sets the loss gauges (from
    the results read back from the results ConfigMaps) and the fit gauges (from status.fit):
    dashboards do not empty out."""
    from ftscale.controller import names
    from ftscale.api.fit_summary import FitSummary

    from controller_testkit import fit_summary

    grid = runs()
    jobs, pods = [], []
    for i, r in enumerate(grid):
        j, pd = succeeded(r, 2.0 + i * 0.01)
        jobs.append(j)
        pods.append(pd)
    first = plan(STUDY, spec(), {}, grid, jobs, pods, NOW, SETTINGS)
    fit_name = first.fit_job["metadata"]["name"]
    fit = job(None, component=names.COMPONENT_FIT, name=fit_name, finished="Complete",
              annotations={names.ANNOTATION_FIT_DIGEST: first.fit_input["inputDigest"]})
    done = plan(STUDY, spec(), first.status, grid, [fit], [pod(fit_name, message=fit_summary())],
                NOW, SETTINGS, recorded=first.new_results)
    # a fresh operator (new registry) sees only the written status and the results ConfigMaps:
    # no Jobs harvested anew
    after = plan(STUDY, spec(), done.status, grid, [], [], NOW + 60, SETTINGS,
                 recorded=first.new_results)
    assert not after.harvested and not after.new_results and len(after.results) == len(grid)
    m = OperatorMetrics()
    m.observe_plan("ns", "demo", after, NOW + 60)
    text = generate_latest(m.registry).decode()
    assert 'ftscale_run_test_loss{data_size="100",method="fmt",model="tiny-1",namespace="ns",pet_size="none",study="demo"} 2.0' in text
    alpha = next(law.params["alpha"] for law in FitSummary.parse(fit_summary()).laws
                 if law.method == "fmt" and law.form == "multiplicative")
    assert (f'ftscale_fit_parameter{{factor="model_size",form="multiplicative",method="fmt",'
            f'namespace="ns",parameter="alpha",study="demo"}} {alpha}') in text
    assert 'ftscale_study_fitted{namespace="ns",study="demo"} 1.0' in text


def test_the_lease_namespace_defaults_to_the_kubeconfig_context_namespace(tmp_path):
    from ftscale.controller.kube import own_namespace

    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: research}}]\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\n")
    assert own_namespace(str(kubeconfig)) == "research"
    kubeconfig.write_text(kubeconfig.read_text().replace(", namespace: research", ""))
    assert own_namespace(str(kubeconfig)) == "default"
