"""The chart renders what a platform team expects: lint clean in every scenario, a restricted
operator pod, documented and schema-checked values, the CRD from crds/ with its lifecycle,
trainer ServiceAccounts without tokens, NOTES that say what to run next, a `helm test` hook.
(RBAC: test_helm_rbac.py; monitoring objects: test_helm_monitoring.py.)"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from helm_support import CHART, REPO, SCENARIOS, HelmError, find, kubernetes_version, one

from ftscale.controller import names
from ftscale.controller.settings import OperatorSettings

RELEASE = "ftscale"
NAMESPACE = "ftscale-system"
OPERATOR = f"{RELEASE}-operator"


# ------------------------------------------------------------------------------ lint / render
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_lint_is_clean_in_every_scenario(helm, scenario):
    out = helm.run("lint", "--strict", str(CHART), "-f", str(scenario),
                   "--kube-version", kubernetes_version()).stdout
    assert "0 chart(s) failed" in out
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_scenarios_cover_every_optional_object(helm):
    kinds = set()
    for scenario in SCENARIOS:
        kinds |= {o["kind"] for o in helm.template([scenario])}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule", "NetworkPolicy", "ConfigMap",
            "Role", "ClusterRole", "CustomResourceDefinition"} <= kinds


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_every_scenario_renders_well_formed_objects(helm, scenario):
    objects = helm.template([scenario])
    assert one(objects, "Deployment", OPERATOR)
    seen = set()
    for obj in objects:
        meta = obj["metadata"]
        ident = (obj["kind"], meta.get("namespace"), meta["name"])
        assert ident not in seen, f"duplicate object {ident}"
        seen.add(ident)
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", meta["name"]), meta["name"]
        assert len(meta["name"]) <= 63 or obj["kind"] == "CustomResourceDefinition"
        labels = meta.get("labels") or {}
        assert labels.get("app.kubernetes.io/part-of") == "ftscale", ident
        assert labels.get("app.kubernetes.io/instance") == RELEASE, ident
        if obj["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert meta.get("namespace"), f"{ident} has no namespace"


def test_long_release_names_stay_within_63_characters(helm):
    objects = helm.template(release="a-very-long-release-name-for-a-team-that-likes-words")
    for obj in objects:
        if obj["kind"] != "CustomResourceDefinition":
            assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]


# --------------------------------------------------------------------------- operator workload
def test_operator_pod_meets_the_restricted_pod_security_standard(default_objects):
    pod = one(default_objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["readOnlyRootFilesystem"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    # read-only root: the only writable place is the /tmp emptyDir
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/tmp"]


def test_operator_has_probes_resources_and_ports(default_objects):
    deployment = one(default_objects, "Deployment", OPERATOR)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    settings = OperatorSettings()
    assert ports == {"metrics": settings.metrics_port, "health": settings.health_port}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["command"] == ["ftscale", "operator"]
    assert deployment["spec"]["replicas"] == 1


def _env(container: dict) -> dict[str, str]:
    """The container's env with downward-API fields resolved as the kubelet would."""
    fields = {"metadata.namespace": NAMESPACE, "metadata.name": f"{OPERATOR}-5d8f7c-abcde"}
    out = {}
    for var in container["env"]:
        if "value" in var:
            out[var["name"]] = var["value"]
        else:
            out[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return out


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: p.stem)
def test_operator_env_is_exactly_what_the_operator_reads(helm, scenario):
    """Every FTSCALE_* variable the chart sets is a real setting, and they parse."""
    (container,) = one(helm.template([scenario]), "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    env = _env(container)
    known = {name for name, _ in OperatorSettings.documentation()}
    unknown = {k for k in env if k.startswith("FTSCALE_")} - known
    assert not unknown, f"the chart sets variables the operator ignores: {sorted(unknown)}"
    settings = OperatorSettings.from_env(env)
    assert settings.lease_namespace == NAMESPACE
    assert settings.identity.startswith(OPERATOR)
    assert settings.leader_election is True


def test_operator_settings_follow_the_values(helm):
    objects = helm.template(sets=["operator.watchNamespaces={research,staging}",
                                  "operator.metricsPort=9100", "trainer.image.registry=r.example",
                                  "trainer.image.tag=1.2.3"])
    (container,) = one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    settings = OperatorSettings.from_env(_env(container))
    assert settings.namespaces == ("research", "staging")
    assert settings.metrics_port == 9100
    assert settings.trainer_image == "r.example/ftscale/trainer:1.2.3"
    assert {p["containerPort"] for p in container["ports"] if p["name"] == "metrics"} == {9100}


def test_image_digest_wins_over_tag_and_default_tag_is_app_version(helm):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    default = one(helm.template(), "Deployment", OPERATOR)
    assert default["spec"]["template"]["spec"]["containers"][0]["image"] == f"ftscale/operator:{chart['appVersion']}"
    digest = "sha256:" + "ab" * 32
    pinned = one(helm.template(sets=[f"operator.image.digest={digest}", "operator.image.tag=9.9"]),
                 "Deployment", OPERATOR)
    assert pinned["spec"]["template"]["spec"]["containers"][0]["image"] == f"ftscale/operator@{digest}"


# -------------------------------------------------------------------------------- trainer SAs
def test_trainer_service_accounts_mount_no_token(helm):
    objects = helm.template(sets=["operator.watchNamespaces={research,staging}"])
    trainers = [sa for sa in find(objects, "ServiceAccount") if sa["metadata"]["name"].endswith("-trainer")]
    assert {sa["metadata"]["namespace"] for sa in trainers} == {"research", "staging"}
    assert all(sa["automountServiceAccountToken"] is False for sa in trainers)
    operator_sa = one(objects, "ServiceAccount", OPERATOR)
    assert operator_sa.get("automountServiceAccountToken", True) is not False


# -------------------------------------------------------------------------------------- CRD
def test_chart_crd_copy_is_identical_to_crds_folder():
    source = (REPO / "crds" / "scalingstudy.yaml").read_bytes()
    copy = (CHART / "files" / "crds" / "scalingstudy.yaml").read_bytes()
    assert copy == source, "run helm/ftscale/sync-files.sh"


def test_rendered_crd_is_the_crds_folder_plus_labels_and_keep(default_objects):
    source = yaml.safe_load((REPO / "crds" / "scalingstudy.yaml").read_text())
    rendered = one(default_objects, "CustomResourceDefinition")
    assert rendered["spec"] == source["spec"]
    assert rendered["metadata"]["name"] == source["metadata"]["name"] == f"{names.PLURAL}.{names.GROUP}"
    assert rendered["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for key, value in (source["metadata"].get("labels") or {}).items():
        assert rendered["metadata"]["labels"][key] == value


def test_crd_lifecycle_values(helm):
    unkept = one(helm.template(sets=["crds.keep=false"]), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (unkept["metadata"].get("annotations") or {})
    assert not find(helm.template(sets=["crds.enabled=false"]), "CustomResourceDefinition")


def test_crd_lifecycle_is_documented():
    doc = (REPO / "docs" / "cluster-install.md").read_text()
    section = doc[doc.index("## CRD lifecycle"):]
    for word in ("install", "upgrade", "uninstall", "helm.sh/resource-policy"):
        assert word in section


# ---------------------------------------------------------------------------- values & schema
def _leaf_paths(node, prefix=""):
    if isinstance(node, dict) and node:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            # Maps of free-form content (labels, resources, security contexts) are one value.
            if isinstance(value, dict) and value and not _is_free_form(path):
                yield from _leaf_paths(value, path)
            else:
                yield path


def _is_free_form(path: str) -> bool:
    return path.split(".")[-1] in {"resources", "podSecurityContext", "securityContext", "labels",
                                    "livenessProbe", "readinessProbe", "annotations"}


def test_every_value_is_documented_by_a_comment_naming_it():
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    documented = set(re.findall(r"^\s*# ([A-Za-z0-9_.]+) -- ", text, flags=re.M))
    missing = [p for p in _leaf_paths(values) if p not in documented]
    assert not missing, f"values.yaml keys without a '# <key> -- ...' comment: {missing}"


def _schema_keys(schema, prefix=""):
    for key, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}.{key}" if prefix else key
        yield path
        if sub.get("type") == "object" and "properties" in sub:
            yield from _schema_keys(sub, path)


def test_schema_and_values_describe_the_same_keys():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    in_values = set(_leaf_paths(values))
    in_schema = set(_schema_keys(schema)) - {"global"}
    assert in_values - in_schema == set(), "values without schema"
    # every schema leaf exists in values.yaml (objects count through their children)
    leaves = {k for k in in_schema if not any(o.startswith(k + ".") for o in in_schema)}
    leaves = {k for k in leaves if not _is_free_form(k.rsplit(".", 1)[0])} | {
        k for k in in_schema if _is_free_form(k)}
    assert leaves - in_values == set(), "schema keys without a default in values.yaml"


def _closed_objects(schema, path="<root>"):
    if schema.get("type") == "object" and "properties" in schema:
        yield path, schema.get("additionalProperties")
        for key, sub in schema["properties"].items():
            yield from _closed_objects(sub, f"{path}.{key}")


def test_schema_rejects_unknown_keys_everywhere():
    schema = json.loads((CHART / "values.schema.json").read_text())
    open_objects = [p for p, extra in _closed_objects(schema) if extra is not False]
    assert not open_objects


@pytest.mark.parametrize("bad, message", [
    ("operator.replica=2", "additional properties 'replica' not allowed"),
    ("operatr.replicas=2", "additional properties 'operatr' not allowed"),
    ("operator.replicas=0", "minimum"),
    ("operator.logLevel=loud", "value must be one of"),
    ("operator.image.pullPolicy=Sometimes", "value must be one of"),
    ("operator.image.digest=latest", "does not match pattern"),
    ("operator.metricsPort=70000", "maximum"),
    ("operator.watchNamespaces={Research}", "does not match pattern"),
    ("operator.leaseDurationSeconds=5", "minimum"),
    ("metrics.serviceMonitor.interval=fast", "does not match pattern"),
    ("metrics.prometheusRule.disabledAlerts={NoSuchAlert}", "value must be one of"),
    ("crds.keep=maybe", "got string, want boolean"),
])
def test_schema_rejects_bad_values(helm, bad, message):
    with pytest.raises(HelmError) as err:
        helm.template(sets=[bad])
    assert "values don't meet the specifications of the schema" in str(err.value)
    assert message in str(err.value)


def test_disabled_alerts_enum_lists_every_alert():
    schema = json.loads((CHART / "values.schema.json").read_text())
    enum = schema["properties"]["metrics"]["properties"]["prometheusRule"]["properties"]["disabledAlerts"]["items"]["enum"]
    rules = yaml.safe_load((REPO / "monitoring" / "rules" / "ftscale-alerts.yaml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    assert sorted(enum) == sorted(alerts)


def test_service_monitor_without_service_fails_with_a_fix(helm):
    with pytest.raises(HelmError, match="needs metrics.service.enabled"):
        helm.template(sets=["metrics.service.enabled=false", "metrics.serviceMonitor.enabled=true"])


# -------------------------------------------------------------------------- NOTES, helm test
def _notes(helm, tmp_path, *sets: str) -> str:
    """NOTES.txt as `helm install` prints it. `helm template` skips NOTES.txt and
    `helm install --dry-run` cannot take --kube-version, so a copy of the chart renders it as
    an ordinary template."""
    chart = tmp_path / "ftscale"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "NOTES.txt").rename(chart / "files" / "notes.txt")
    (chart / "templates" / "notes-preview.yaml").write_text(
        'notes: |\n{{ tpl (.Files.Get "files/notes.txt") . | indent 2 }}\n')
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--kube-version", kubernetes_version(), "--show-only", "templates/notes-preview.yaml"]
    for s in sets:
        args += ["--set", s]
    return yaml.safe_load(helm.run(*args).stdout)["notes"]


def test_notes_tell_the_next_commands(helm, tmp_path):
    notes = _notes(helm, tmp_path / "a")
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{OPERATOR}" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE}" in notes
    assert "kubectl get scalingstudies" in notes
    assert "metrics.serviceMonitor.enabled=true" in notes  # monitoring off: how to turn it on
    namespaced = _notes(helm, tmp_path / "b", "operator.watchNamespaces={research}", "dashboard.enabled=true")
    assert "kubectl apply -n research -f study.yaml" in namespaced
    assert "Grafana" in namespaced


def test_helm_test_hook_checks_the_metrics_service(default_objects):
    pod = one(default_objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["automountServiceAccountToken"] is False
    script = pod["spec"]["containers"][0]["args"][0]
    compile(script, "helm-test", "exec")  # the embedded check is valid Python
    assert f"http://{OPERATOR}-metrics.{NAMESPACE}.svc:" in script
    service = one(default_objects, "Service", f"{OPERATOR}-metrics")
    assert f":{service['spec']['ports'][0]['port']}/metrics" in script


def test_trainer_metrics_off(helm):
    objects = helm.template(sets=["trainer.metricsPort=0", "networkPolicy.enabled=true"])
    policy = one(objects, "NetworkPolicy", "ftscale-trainer")
    assert policy["spec"]["ingress"] == []  # nothing to scrape: nothing may connect
    (container,) = one(objects, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    assert OperatorSettings.from_env(_env(container)).trainer_metrics_port == 0
    with pytest.raises(HelmError, match="needs trainer.metricsPort"):
        helm.template(sets=["trainer.metricsPort=0", "metrics.podMonitor.enabled=true"])


def test_packaged_chart_carries_its_files_and_not_the_repo_tooling(helm, tmp_path):
    import tarfile

    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("ftscale-*.tgz")
    with tarfile.open(archive) as tar:
        members = set(tar.getnames())
    for wanted in ("files/crds/scalingstudy.yaml", "files/rules/ftscale-alerts.yaml",
                   "files/dashboards/ftscale-studies.json", "values.schema.json", "templates/NOTES.txt",
                   "templates/tests/test-operator-endpoints.yaml"):
        assert f"ftscale/{wanted}" in members
    assert not [m for m in members if "/ci/" in m or m.endswith("sync-files.sh")]
