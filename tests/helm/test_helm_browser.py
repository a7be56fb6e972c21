"""The chart's study browser values (ui.*): off by default; on, the operator gets the settings,
the container port and exactly one more grant — `get` on ConfigMaps, the call the browser's
report reader makes beyond what the operator itself needs (it lists the results ConfigMaps
anyway; recorded through the same transport test_helm_rbac.py records) — in the namespaces it
watches, and NOTES.txt says how to open it."""

from __future__ import annotations

from helm_support import one
from test_helm_chart import NAMESPACE, OPERATOR, _env, _notes
from test_helm_rbac import OPERATOR_SA, RecordingKube, _bound_rules, _granted, _parse, required_grants

from ftscale.api import results_store

from ftscale.controller.settings import OperatorSettings
from ftscale.report.cluster import kube_reader

UI = ["ui.enabled=true", "ui.port=8090", "ui.grafanaUrl=https://grafana.example.com"]


def browser_grants() -> set[tuple[str, str, str]]:
    """What the browser's report reads beyond the operator's own calls, as (group, resource,
    verb)."""
    kube = RecordingKube()
    read = kube_reader(kube)
    read.list_configmaps("research", results_store.label_selector("s"))
    read.get_configmap("research", "s-fit-input")
    return {(g, r, v) for g, r, v, _ in (_parse(m, p) for m, p in kube.calls)} - required_grants()


def _container(objects):
    return one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]


def test_the_browser_is_off_by_default(default_objects):
    container = _container(default_objects)
    assert OperatorSettings.from_env(_env(container)).ui_port == 0
    assert "ui" not in {p["name"] for p in container["ports"]}
    granted = _granted(_bound_rules(default_objects, OPERATOR_SA, NAMESPACE))
    assert not browser_grants() & granted


def test_ui_values_become_the_operators_settings_and_port(helm):
    container = _container(helm.template(sets=UI))
    settings = OperatorSettings.from_env(_env(container))
    assert (settings.ui_port, settings.ui_bind_address, settings.ui_grafana_url) == \
        (8090, "127.0.0.1", "https://grafana.example.com")
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["ui"] == 8090


def test_the_browser_adds_exactly_the_grant_its_report_reader_uses(helm):
    extra = browser_grants()
    assert extra == {("", "configmaps", "get")}
    base = _granted(_bound_rules(helm.template(), OPERATOR_SA, NAMESPACE))
    on = _granted(_bound_rules(helm.template(sets=UI), OPERATOR_SA, NAMESPACE))
    assert on - base == extra and base <= on
    assert required_grants() <= on
    # namespaced mode: only where studies live
    rules = _bound_rules(helm.template(sets=UI + ["operator.watchNamespaces={research,staging}"]),
                         OPERATOR_SA, NAMESPACE)
    scopes = {s for s, r in rules if "configmaps" in r["resources"] and "get" in r["verbs"]}
    assert scopes == {"research", "staging"}


def test_notes_say_how_to_open_the_browser(helm, tmp_path):
    on = _notes(helm, tmp_path / "on", *UI)
    assert f"kubectl -n {NAMESPACE} port-forward deployment/{OPERATOR} 8090:8090" in on
    assert "http://localhost:8090/" in on
    off = _notes(helm, tmp_path / "off")
    assert "ftscale report --study" in off and "ui.enabled=true" in off
