"""`helm install` of the chart onto the real control plane (tests/cluster), then the operator
run as the chart configures it — its environment from the rendered Deployment, its API
credentials a token of the chart's ServiceAccount — through a study: proof that the API server
accepts every object (the operator pod, the helm-test pod, and the operator's run and fit pods,
all in namespaces that enforce the "restricted" Pod Security Standard), that the least-privilege RBAC is enough for a whole study and forbids the
rest, that `helm test` works, and that upgrade and uninstall keep the CRD.

A real Prometheus (Debian's `prometheus`, installed by tests/helm/setup.sh) then scrapes that
operator and a trainer's metrics endpoint, evaluates the alert rules, and answers every query
of the Grafana dashboard. The KWOK nodes run no containers: the operator runs here as a
process, and run pods are finished by the test with real result JSON (tests/integration's
testkit).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from helm_support import CHART, DASHBOARD_JSON, REPO, RULES, Helm
from promql_names import substitute_grafana_variables

sys.path.insert(0, str(REPO / "tests" / "integration"))
from producers import example_fit_message  # noqa: E402
from operator_testkit import (create_study, finish, free_port, get_study,  # noqa: E402
                              running_pods, study_manifest, wait_until)

from cluster.kubelet import complete_pod  # noqa: E402
from cluster.study_results import study_results  # noqa: E402
from ftscale.controller import names  # noqa: E402

RELEASE = "ftscale"
CRD_NAME = f"{names.PLURAL}.{names.GROUP}"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}


def _suffix() -> str:
    return uuid.uuid4().hex[:6]


class Release:
    """The installed chart and what the tests learn about it."""

    def __init__(self, helm: Helm, cluster, kubeconfig: str, namespace: str, study_namespace: str,
                 other_namespace: str):
        self.helm = helm
        self.cluster = cluster
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.study_namespace = study_namespace
        self.other_namespace = other_namespace

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.helm.run(*args, "--kubeconfig", self.kubeconfig, "--namespace", self.namespace, **kw)


def _adopt_existing_crd(apiext: client.ApiextensionsV1Api, namespace: str) -> None:
    """Another suite may have applied crds/ already: let this release adopt it, as an operator
    would when moving a hand-applied CRD under Helm (same file, so nothing changes)."""
    try:
        crd = apiext.read_custom_resource_definition(CRD_NAME)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    annotations = crd.metadata.annotations or {}
    if annotations.get("meta.helm.sh/release-name") == RELEASE and \
            annotations.get("meta.helm.sh/release-namespace") == namespace:
        return
    apiext.patch_custom_resource_definition(CRD_NAME, {"metadata": {
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": RELEASE,
                        "meta.helm.sh/release-namespace": namespace}}})


@pytest.fixture(scope="module")
def release(helm, cluster, kubeconfig_path, core_api, apiextensions_api):
    suffix = _suffix()
    ns, study_ns, other_ns = f"ftscale-{suffix}", f"research-{suffix}", f"elsewhere-{suffix}"
    for name in (ns, study_ns, other_ns):
        core_api.create_namespace({"metadata": {"name": name, "labels": {
            **RESTRICTED, "ftscale.test/namespace": "true"}}})
    _adopt_existing_crd(apiextensions_api, ns)
    rel = Release(helm, cluster, kubeconfig_path, ns, study_ns, other_ns)
    rel.run("install", RELEASE, str(CHART), "--wait", "--timeout", "180s",
            "--set", f"operator.watchNamespaces={{{study_ns}}}",
            "--set", "trainer.image.tag=test", timeout=240)
    yield rel
    rel.run("uninstall", RELEASE, "--wait", "--timeout", "120s", check=False, timeout=180)
    for name in (ns, study_ns, other_ns):
        try:
            core_api.delete_namespace(name)
        except ApiException:
            pass


# ------------------------------------------------------------------------ objects accepted
def test_crd_is_established_with_the_charts_schema(release, apiextensions_api):
    """The API server accepted the CRD (structural schema, CEL cost budget) and serves the
    chart's schema (the chart's copy equals crds/: test_helm_chart.py)."""
    crd = wait_until(lambda: (c := apiextensions_api.read_custom_resource_definition(CRD_NAME)) and any(
        x.type == "Established" and x.status == "True" for x in c.status.conditions or ()) and c,
        60, "CRD Established")
    source = yaml.safe_load((CHART / "files" / "crds" / "scalingstudy.yaml").read_text())
    served = client.ApiClient().sanitize_for_serialization(crd.spec)
    assert served["versions"][0]["schema"] == source["spec"]["versions"][0]["schema"]
    assert crd.metadata.annotations["helm.sh/resource-policy"] == "keep"


def test_operator_pod_is_admitted_under_restricted_pod_security(release, core_api, apps_api):
    deployment = apps_api.read_namespaced_deployment(f"{RELEASE}-operator", release.namespace)
    assert deployment.status.available_replicas == 1
    pods = core_api.list_namespaced_pod(
        release.namespace, label_selector="app.kubernetes.io/component=operator").items
    assert len(pods) == 1, "the ReplicaSet could not create the pod (Pod Security admission?)"
    pod = pods[0]
    assert pod.spec.service_account_name == f"{RELEASE}-operator"
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.containers[0].security_context.read_only_root_filesystem is True


def test_trainer_service_account_in_the_study_namespace_mounts_no_token(release, core_api):
    sa = core_api.read_namespaced_service_account(f"{RELEASE}-trainer", release.study_namespace)
    assert sa.automount_service_account_token is False


# --------------------------------------------------------------------------------------- RBAC
def _can_i(release: Release, verb: str, resource: str, namespace: str, subresource: str = "") -> bool:
    sa = f"system:serviceaccount:{release.namespace}:{RELEASE}-operator"
    args = ["auth", "can-i", verb, resource, "--as", sa, "-n", namespace]
    if subresource:
        args += ["--subresource", subresource]
    return release.cluster.kubectl(*args, check=False).stdout.strip() == "yes"


def test_rbac_allows_the_operators_calls_in_watched_namespaces_only(release):
    from test_helm_rbac import required_grants

    for group, resource, verb in sorted(required_grants()):
        if group == "coordination.k8s.io":
            continue  # leases: next test
        base, _, sub = resource.partition("/")
        qualified = f"{base}.{group}" if group else base
        assert _can_i(release, verb, qualified, release.study_namespace, sub), (verb, resource)
        assert not _can_i(release, verb, qualified, release.other_namespace, sub), (verb, resource, "elsewhere")
    assert not _can_i(release, "get", "secrets", release.study_namespace)
    assert not _can_i(release, "delete", f"{names.PLURAL}.{names.GROUP}", release.study_namespace)
    assert not _can_i(release, "update", f"{names.PLURAL}.{names.GROUP}", release.study_namespace)
    assert not _can_i(release, "create", "pods", release.study_namespace)


def test_rbac_allows_only_the_releases_lease(release):
    lease = f"{RELEASE}-operator"
    assert _can_i(release, "update", f"leases.coordination.k8s.io/{lease}", release.namespace)
    assert _can_i(release, "create", "leases.coordination.k8s.io", release.namespace)
    assert not _can_i(release, "update", "leases.coordination.k8s.io/someone-else", release.namespace)
    assert not _can_i(release, "create", "leases.coordination.k8s.io", release.study_namespace)


# ---------------------------------------------- the operator, as configured, runs a study
def _token_kubeconfig(release: Release, path: Path) -> Path:
    """A kubeconfig for the operator's ServiceAccount: the API server of the admin kubeconfig,
    credentials from a TokenRequest (what the pod's projected token would hold)."""
    admin = yaml.safe_load(Path(release.kubeconfig).read_text())
    token = release.cluster.kubectl("-n", release.namespace, "create", "token", f"{RELEASE}-operator",
                                    "--duration", "1h").stdout.strip()
    cluster = admin["clusters"][0]
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [cluster],
              "users": [{"name": "operator", "user": {"token": token}}],
              "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
              "current-context": "operator"}
    path.write_text(yaml.safe_dump(config))
    return path


def _chart_env(release: Release, apps_api, pod_name: str) -> dict[str, str]:
    deployment = apps_api.read_namespaced_deployment(f"{RELEASE}-operator", release.namespace)
    env = {}
    for var in deployment.spec.template.spec.containers[0].env:
        if var.value is not None:
            env[var.name] = var.value
        else:
            field = var.value_from.field_ref.field_path
            env[var.name] = {"metadata.namespace": release.namespace, "metadata.name": pod_name}[field]
    return env


class StudyRun:
    def __init__(self, operator: subprocess.Popen, log: Path, metrics_port: int, study: str):
        self.operator, self.log, self.metrics_port, self.study = operator, log, metrics_port, study


@pytest.fixture(scope="module")
def study_run(release, apps_api, core_api, custom_objects_api, tmp_path_factory):
    """The operator, with the chart's environment and ServiceAccount, takes a 4-run study
    (one run fails with an invalid config) to its fit."""
    tmp = tmp_path_factory.mktemp("chart-operator")
    kubeconfig = _token_kubeconfig(release, tmp / "operator.kubeconfig")
    metrics_port, health_port = free_port(), free_port()
    env = {**os.environ, **_chart_env(release, apps_api, "ftscale-operator-test-0"),
           "FTSCALE_METRICS_PORT": str(metrics_port), "FTSCALE_HEALTH_PORT": str(health_port),
           # test timers (the chart's defaults suit a real cluster)
           "FTSCALE_BATCH_SECONDS": "0.1", "FTSCALE_RESYNC_SECONDS": "5",
           "FTSCALE_RESULT_GRACE_SECONDS": "3", "FTSCALE_LOG_FORMAT": "plain",
           "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}"}
    log = tmp / "operator.log"
    with open(log, "wb") as out:
        operator = subprocess.Popen([sys.executable, "-m", "ftscale", "operator", "--kubeconfig", str(kubeconfig)],
                                    stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    study = "chartstudy"
    try:
        def healthy():
            assert operator.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2):
                    return True
            except OSError:
                return False
        wait_until(healthy, 60, "operator /healthz")
        create_study(custom_objects_api, release.study_namespace,
                     study_manifest(study, data_sizes=(100, 200), maxParallelRuns=4, backoffLimit=0))
        ns = release.study_namespace
        wait_until(lambda: len(running_pods(core_api, ns, study)) == 4, 90, "4 running run pods")
        for i, pod in enumerate(sorted(running_pods(core_api, ns, study), key=lambda p: p.metadata.name)):
            if i == 0:
                finish(core_api, pod, study, exit_code=2, message="invalid config: no such task")
            else:
                finish(core_api, pod, study)
        wait_until(lambda: (get_study(custom_objects_api, ns, study).get("status") or {}).get("runsSucceeded") == 3,
                   90, "3 harvested results")
        fit_pod = wait_until(lambda: running_pods(core_api, ns, study, "fit"), 90, "the fit pod")[0]
        # the fit pod's termination message as the fit Job writes it (tests/producers.py)
        finish(core_api, fit_pod, study, message=example_fit_message(study))
        wait_until(lambda: any(c["type"] == "Fitted" and c["status"] == "True" for c in
                               (get_study(custom_objects_api, ns, study).get("status") or {}).get("conditions") or ()),
                   90, "condition Fitted")
        yield StudyRun(operator, log, metrics_port, study)
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
        print(f"---- operator log (tail) ----\n{log.read_text(errors='replace')[-5000:]}")


def test_the_charts_rbac_carries_a_whole_study(release, study_run, custom_objects_api, core_api):
    status = get_study(custom_objects_api, release.study_namespace, study_run.study)["status"]
    assert status["runsSucceeded"] == 3 and status["runsFailed"] == 1
    assert {r.get("reason") for r in status["recentFailures"]} == {"InvalidConfig"}
    # the results ConfigMaps, written and listed with the chart's RBAC only
    recorded = study_results(core_api, release.study_namespace, study_run.study)
    assert len(recorded) == 4 and {r.reason for r in recorded.values() if not r.ok} == {"InvalidConfig"}
    assert status["fit"]
    log = study_run.log.read_text(errors="replace")
    # A denied call shows as HTTP status 403 / "Forbidden"; match the status, not any "403" (the
    # API server's random port can contain those digits).
    denied = re.search(r"status=403\b|\b403 Forbidden\b|\bcode.: 403\b|[Ff]orbidden", log)
    assert denied is None, log[-3000:]
    # leader election used the Lease the chart's RBAC allows (name and namespace from the chart env)
    lease = client.CoordinationV1Api(core_api.api_client).read_namespaced_lease(f"{RELEASE}-operator", release.namespace)
    assert lease.spec.holder_identity == "ftscale-operator-test-0"


# ------------------------------------------------------------------------------- helm test
def test_helm_test_hook_runs_and_is_cleaned_up(release, core_api):
    """KWOK runs no containers: the test pod's check is finished by hand with exit 0 once the
    API server admitted it (restricted PSA) and the scheduler placed it; what is tested is the
    hook itself — created on `helm test`, waited for, deleted when it succeeded."""
    proc = subprocess.Popen([str(release.helm.binary), "test", RELEASE, "--kubeconfig", release.kubeconfig,
                             "-n", release.namespace, "--timeout", "120s"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HELM_CACHE_HOME": "/tmp/ftscale-helm-test/cache",
                                 "HELM_CONFIG_HOME": "/tmp/ftscale-helm-test/config",
                                 "HELM_DATA_HOME": "/tmp/ftscale-helm-test/data"})
    try:
        name = f"{RELEASE}-test-endpoints"
        wait_until(lambda: core_api.list_namespaced_pod(
            release.namespace, field_selector=f"metadata.name={name}").items, 60, "the helm test pod")
        complete_pod(core_api, (release.namespace, name), exit_code=0, message="ok")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Phase:          Succeeded" in out
    wait_until(lambda: not core_api.list_namespaced_pod(release.namespace, field_selector=f"metadata.name={name}").items,
               60, "hook pod deleted (hook-succeeded)")


# ------------------------------------------------------------------- Prometheus + dashboard
@pytest.fixture(scope="module")
def prometheus(release, study_run, tmp_path_factory):
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("prometheus is not installed: run tests/helm/setup.sh (apt-get install prometheus)")
        pytest.skip("prometheus is not installed: run tests/helm/setup.sh")
    from ftscale_trainer.metrics import TrainerMetrics

    tmp = tmp_path_factory.mktemp("prometheus")
    trainer_port = free_port()
    labels = {"study": study_run.study, "run": "abc123", "model": "tiny-2", "method": "lora", "data_size": "200"}
    trainer = TrainerMetrics(labels, port=trainer_port)
    for metric, value in (("ftscale_trainer_step", 40), ("ftscale_trainer_train_loss", 2.5),
                          ("ftscale_trainer_eval_loss", 2.7), ("ftscale_trainer_best_eval_loss", 2.6),
                          ("ftscale_trainer_tokens_per_second", 1.5e4), ("ftscale_trainer_learning_rate", 3e-4),
                          ("ftscale_trainer_gpu_memory_bytes", 2.1e9)):
        trainer.set(metric, value)
    trainer.add("ftscale_trainer_tokens_seen_total", 81920)
    web = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            # as the chart's ServiceMonitor: job from the Service's ftscale.io/scrape-job label
            {"job_name": "ftscale-operator", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{study_run.metrics_port}"]}]},
            # as the chart's PodMonitor: the pod's namespace becomes the `namespace` label
            {"job_name": "trainer", "honor_labels": True,
             "static_configs": [{"targets": [f"127.0.0.1:{trainer_port}"],
                                 "labels": {"namespace": release.study_namespace}}]},
        ]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen([binary, f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{web}"
    try:
        def scraped():
            assert proc.poll() is None, (tmp / "prometheus.log").read_text()[-3000:]
            try:
                result = _api(url, "query", query='count(up == 1)')["result"]
            except OSError:
                return False
            return result and result[0]["value"][1] == "2"
        wait_until(scraped, 60, "both targets scraped")
        time.sleep(3)  # a few samples, so rate() has two points
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        trainer.close()


def _api(url: str, endpoint: str, **params: str) -> dict:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{endpoint}?{query}", timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


# Dashboard queries that are rightly empty in this study, and why.
EMPTY_IN_THIS_STUDY = {
    "Reconcile errors": "no reconcile pass raised",
}


def test_every_dashboard_query_answers_from_what_prometheus_scraped(release, study_run, prometheus):
    board = json.loads(DASHBOARD_JSON.read_text())
    variables = {"namespace": release.study_namespace, "study": study_run.study}
    empty = []
    for panel in board["panels"]:
        for target in panel.get("targets") or ():
            expr = target["expr"]
            for name, value in variables.items():
                expr = expr.replace(f"${name}", value)
            expr = substitute_grafana_variables(expr).replace("[5m]", "[1m]")
            result = _api(prometheus, "query", query=expr)["result"]
            if not result and panel["title"] not in EMPTY_IN_THIS_STUDY:
                empty.append(f"{panel['title']}: {expr}")
    assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            selector, label = variable["query"]["query"][len("label_values("):-1].rsplit(",", 1)
            selector = selector.replace("$namespace", release.study_namespace)
            values = _api(prometheus, "series", **{"match[]": selector})
            assert {s[label.strip()] for s in values} >= {variables[variable["name"]]}


def test_alert_rules_evaluate_and_the_failed_run_alerts(prometheus, study_run):
    def evaluated():
        groups = _api(prometheus, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return len(rules) >= 6 and all(r.get("lastEvaluation", "").startswith("20") for r in rules) and rules
    rules = wait_until(evaluated, 30, "every rule evaluated")
    bad = [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"]
    assert not bad
    alerts = _api(prometheus, "alerts")["alerts"]
    failing = [a for a in alerts if a["labels"]["alertname"] == "FtscaleRunsFailing"]
    assert [a["labels"]["study"] for a in failing] == [study_run.study]
    assert not [a for a in alerts if a["labels"]["alertname"] in ("FtscaleOperatorDown", "FtscaleFitFailed")]


# ------------------------------------------------------------------- upgrade, uninstall
def test_upgrade_then_uninstall_keeps_the_crd_and_the_studies(release, study_run, apps_api, apiextensions_api,
                                                              custom_objects_api):
    upgrade = release.run("upgrade", RELEASE, str(CHART), "--reuse-values", "--set", "operator.replicas=2",
                          "--wait", "--timeout", "120s", timeout=180, check=False)
    if upgrade.returncode != 0:
        state = release.cluster.kubectl("-n", release.namespace, "get", "deploy,rs,pods", "-o", "wide",
                                        check=False).stdout
        events = release.cluster.kubectl("-n", release.namespace, "get", "events", check=False).stdout
        pytest.fail(f"helm upgrade failed: {upgrade.stderr}\n{state}\n{events[-4000:]}")
    assert apps_api.read_namespaced_deployment(f"{RELEASE}-operator", release.namespace).spec.replicas == 2
    release.run("uninstall", RELEASE, "--wait", "--timeout", "120s", timeout=180)
    with pytest.raises(ApiException) as gone:
        apps_api.read_namespaced_deployment(f"{RELEASE}-operator", release.namespace)
    assert gone.value.status == 404
    assert apiextensions_api.read_custom_resource_definition(CRD_NAME)  # kept
    assert get_study(custom_objects_api, release.study_namespace, study_run.study)["status"]["fit"]
