"""Alert rules and the Grafana dashboard: valid PromQL (promtool's parser), only metric and label
names that ftscale.metric_names exports (renaming a metric fails here), every alert unit-tested
with promtool, the generated dashboard and the chart's copies up to date, and the chart's
monitoring objects selecting what the operator really labels."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from helm_support import CHART, DASHBOARD_JSON, MONITORING, REPO, RULE_TESTS, RULES, one
from promql_names import names_in, substitute_grafana_variables

from ftscale import metric_names
from ftscale.controller import names, templates

OPERATOR_JOB = "ftscale-operator"
# Labels Prometheus itself attaches to every scraped series (target labels). The operator's
# own series carry `namespace` (the study's), trainer series get it from the scraped pod.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "container", "endpoint", "service"}
# Series that are not ftscale's but that the rules may use.
PROMETHEUS_SERIES = {"up": ()}
# Catalogue metrics the dashboard and alerts leave out, and why.
NOT_SHOWN = {
    "ftscale_trainer_best_eval_loss": "the dev-loss panel shows every evaluation; the best is its minimum",
}


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every query of the generated dashboard, variables included."""
    board = json.loads(DASHBOARD_JSON.read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets") or ():
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]["query"]
            # label_values(<series selector>, <label>) is Grafana's, not PromQL: check the selector.
            selector, label = query[len("label_values("):-1].rsplit(",", 1)
            assert query.startswith("label_values(")
            out.append((f"variable {variable['name']}", selector.strip()))
            out.append((f"variable {variable['name']} label", f"group by ({label.strip()}) ({selector.strip()})"))
    return out


def all_queries() -> list[tuple[str, str]]:
    rules = [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    return rules + [(where, substitute_grafana_variables(q)) for where, q in dashboard_queries()]


# ------------------------------------------------------------------------------------ promtool
def test_promtool_check_rules(promtool):
    out = subprocess.run([str(promtool), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in out.stdout


def test_promtool_unit_tests_of_the_alerts_pass(promtool):
    out = subprocess.run([str(promtool), "test", "rules", str(RULE_TESTS)], capture_output=True,
                         text=True, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test") or ():
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {r["alert"] for r in alert_rules()}
    assert alerts - fires == set(), "alerts never shown to fire"
    assert alerts - quiet == set(), "alerts never shown to stay quiet"


def test_every_alert_says_what_to_do(promtool):
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and "kubectl" in rule["annotations"]["description"]


def test_every_query_is_valid_promql(promtool, tmp_path):
    """promtool parses each dashboard and alert expression (as a recording rule)."""
    rules = {"groups": [{"name": "queries", "rules": [
        {"record": f"ftscale_check:query_{i}", "expr": expr} for i, (_, expr) in enumerate(all_queries())]}]}
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    out = subprocess.run([str(promtool), "check", "rules", str(path)], capture_output=True, text=True)
    where = "\n".join(f"query_{i}: {w}" for i, (w, _) in enumerate(all_queries()))
    assert out.returncode == 0, f"{out.stdout}{out.stderr}\n{where}"


# ---------------------------------------------------------------------- names vs the catalogue
def _labels_of(series: str) -> set[str]:
    if series in PROMETHEUS_SERIES:
        return set(PROMETHEUS_SERIES[series])
    for metric in metric_names.CATALOGUE:
        if series in (metric.name, metric.name + "_bucket", metric.name + "_sum", metric.name + "_count"):
            return set(metric.labels) | ({"le"} if series.endswith("_bucket") else set())
    raise KeyError(series)


@pytest.mark.parametrize("where, expr", all_queries(), ids=[w for w, _ in all_queries()])
def test_queries_use_only_exported_metric_and_label_names(where, expr):
    found = names_in(expr)
    known = metric_names.exported_series_names() | set(PROMETHEUS_SERIES)
    assert found.metrics, f"{where}: no metric found in {expr}"
    unknown = found.metrics - known
    assert not unknown, f"{where}: {sorted(unknown)} not exported (ftscale/metric_names.py)"
    allowed_everywhere = set(TARGET_LABELS)
    for metric, labels in found.matcher_labels.items():
        assert metric is not None, f"{where}: a selector without a metric name"
        bad = labels - _labels_of(metric) - allowed_everywhere
        assert not bad, f"{where}: {metric} has no label(s) {sorted(bad)}"
    in_scope = set().union(*(_labels_of(m) for m in found.metrics)) | allowed_everywhere
    bad = found.grouping_labels - in_scope
    assert not bad, f"{where}: grouping by label(s) {sorted(bad)} that none of its metrics has"


def test_renaming_a_metric_is_caught(monkeypatch):
    """The check above is not vacuous: with a metric renamed in the catalogue, queries fail."""
    renamed = tuple(
        metric_names.Metric("ftscale_study_runs_total_renamed", m.kind, m.help, m.labels)
        if m.name == "ftscale_study_runs" else m for m in metric_names.CATALOGUE)
    monkeypatch.setattr(metric_names, "CATALOGUE", renamed)
    failing = [w for w, e in all_queries()
               if not names_in(e).metrics <= metric_names.exported_series_names() | set(PROMETHEUS_SERIES)]
    assert any(w.startswith("alert FtscaleStudyStalled") for w in failing)
    assert any(w.startswith("panel 'Runs by phase'") for w in failing)


def test_dashboard_and_alerts_cover_the_catalogue():
    used = set().union(*(names_in(e).metrics for _, e in all_queries()))
    for metric in metric_names.CATALOGUE:
        series = {metric.name, metric.name + "_bucket"}
        if metric.name in NOT_SHOWN:
            assert not series & used, f"{metric.name} is shown now: drop it from NOT_SHOWN"
            continue
        assert series & used, f"{metric.name} is exported but neither on the dashboard nor in an alert"


def test_dashboard_shows_what_the_issue_asks_for():
    titles = [p["title"] for p in json.loads(DASHBOARD_JSON.read_text())["panels"]]
    for wanted in ("Study progress", "Runs by phase", "Train loss per run", "Dev loss per run",
                   "Training throughput", "GPU memory", "Final test loss vs finetuning data size",
                   "Fitted scaling-law parameters"):
        assert wanted in titles


def test_operator_job_name_is_the_one_the_service_monitor_gives(helm):
    objects = helm.template(sets=["metrics.serviceMonitor.enabled=true"])
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == OPERATOR_JOB
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert f'job="{OPERATOR_JOB}"' in RULES.read_text()
    assert f'job=\\"{OPERATOR_JOB}\\"' in DASHBOARD_JSON.read_text()


def test_pod_monitor_and_network_policy_select_the_operators_pods(helm):
    objects = helm.template(sets=["metrics.podMonitor.enabled=true", "networkPolicy.enabled=true"])
    run_pod = templates.common_labels("study", names.COMPONENT_RUN)
    fit_pod = templates.common_labels("study", names.COMPONENT_FIT)
    selector = one(objects, "PodMonitor")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= run_pod.items()
    assert not selector.items() <= fit_pod.items()  # the fit pod exports no live metrics
    policy = one(objects, "NetworkPolicy", "ftscale-trainer")["spec"]["podSelector"]["matchLabels"]
    assert policy.items() <= run_pod.items() and policy.items() <= fit_pod.items()


# ----------------------------------------------------------------------------- generated files
def test_dashboard_json_is_generated_from_the_code():
    out = subprocess.run([sys.executable, str(MONITORING / "dashboard.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_chart_copies_are_up_to_date():
    out = subprocess.run([str(CHART / "sync-files.sh"), "--check"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_chart_prometheus_rule_ships_the_tested_rules(helm):
    objects = helm.template(sets=["metrics.prometheusRule.enabled=true"])
    assert one(objects, "PrometheusRule")["spec"] == yaml.safe_load(RULES.read_text())


def test_chart_prometheus_rule_values_only_drop_alerts_or_add_labels(helm):
    objects = helm.template(sets=["metrics.prometheusRule.enabled=true",
                                  "metrics.prometheusRule.disabledAlerts={FtscaleStudyNoProgress}",
                                  "metrics.prometheusRule.additionalAlertLabels.team=ml"])
    shipped = {r["alert"]: r for g in one(objects, "PrometheusRule")["spec"]["groups"] for r in g["rules"]}
    tested = {r["alert"]: r for r in alert_rules()}
    assert set(shipped) == set(tested) - {"FtscaleStudyNoProgress"}
    for name, rule in shipped.items():
        assert rule["expr"] == tested[name]["expr"] and rule.get("for") == tested[name].get("for")
        assert rule["labels"] == {**tested[name]["labels"], "team": "ml"}


def test_chart_dashboard_configmap_holds_the_generated_json(helm):
    objects = helm.template(sets=["dashboard.enabled=true", "dashboard.namespace=monitoring"])
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["ftscale-studies.json"]) == json.loads(DASHBOARD_JSON.read_text())
