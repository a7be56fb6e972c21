"""The chart's RBAC grants exactly what the operator's code uses: every API call of
ftscale.controller.kube.Kube (recorded by running each method against a recording client) and
the list/watch of every resource kopf watches for it (read from kopf's handler registry).
A grant that is missing fails, and so does a grant that no code uses."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from helm_support import CHART, find, one

from ftscale.controller import names
from ftscale.controller.kube import Kube
from ftscale.controller.templates import StudyRef

RELEASE = "ftscale"
NAMESPACE = "ftscale-system"
OPERATOR_SA = f"{RELEASE}-operator"

# Grants no ftscale code path makes, each with the reason it is still needed.
FRAMEWORK_GRANTS = {
    # kopf's resource observer watches CRDs (kopf/_core/reactor/observation.py), so an operator
    # started before the CRD existed picks it up without a restart.
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}

VERBS = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}


class RecordingKube(Kube):
    """The real Kube methods over a transport that records (method, path) and answers `{}`.
    Kube.request is the one place the operator talks to the API server (checked below)."""

    def __init__(self):
        super().__init__(api=None)
        self.calls: list[tuple[str, str]] = []

    def request(self, method, path, *args, **kwargs):
        self.calls.append((method, path))
        return {}


SAMPLE_ARGS = {
    "namespace": "research", "name": "study-a1b2c3d4e5", "ttl": 600, "exists": True,
    "manifest": {"metadata": {"namespace": "research", "name": "study-a1b2c3d4e5"}},
    "data": {"k": "v"}, "field": "data", "adopt": True, "label_selector": "ftscale.io/study=s", "status": {"runsTotal": 1}, "old_status": {}, "resource_version": "7",
    "involved": {"metadata": {"namespace": "research", "name": "study", "uid": "u"}},
    "type_": "Normal", "reason": "Test", "message": "m", "now_text": "2026-01-01T00:00:00Z",
    "spec": {"holderIdentity": "me"},
    "lease": {"metadata": {"namespace": NAMESPACE, "name": f"{RELEASE}-operator"}, "spec": {}},
}


def _parse(method: str, path: str) -> tuple[str, str, str, str | None]:
    """(group, resource[/subresource], verb, namespace) of one REST call."""
    m = re.fullmatch(r"/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/(?P<ns>[^/]+)/"
                     r"(?P<resource>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?", path)
    assert m, f"unrecognised API path {path}: teach this test its shape"
    resource = m["resource"] + (f"/{m['sub']}" if m["sub"] else "")
    verb = VERBS.get(method) or ("get" if m["name"] else "list")
    return (m["group"] or "", resource, verb, m["ns"])


def api_calls_of_kube() -> set[tuple[str, str, str, str | None]]:
    """Every call each public Kube method makes (both branches of put_configmap_data)."""
    calls = set()
    for method_name, method in inspect.getmembers(Kube, inspect.isfunction):
        if method_name.startswith("_") or method_name == "request":
            continue
        params = [p for p in inspect.signature(method).parameters if p != "self"]
        unknown = [p for p in params if p not in SAMPLE_ARGS]
        assert not unknown, f"Kube.{method_name} takes {unknown}: add sample values to SAMPLE_ARGS"
        for exists in (True, False):
            kube = RecordingKube()
            kwargs = {p: SAMPLE_ARGS[p] for p in params}
            if "exists" in kwargs:
                kwargs["exists"] = exists
            getattr(kube, method_name)(**kwargs)
            calls |= {_parse(m, p) for m, p in kube.calls}
    return calls


def watched_resources() -> set[tuple[str, str]]:
    """(group, plural) of everything handlers.py registers with kopf (indices, event handlers)."""
    import kopf

    from ftscale.controller import handlers  # noqa: F401  (registers the handlers)

    registry = kopf.get_default_registry()
    changing = registry._changing.get_all_handlers()
    assert not changing, ("on.create/update/delete handlers make kopf patch progress annotations "
                          "onto the object: grant patch and update this test")
    watched = set()
    for handler in [*registry._indexing.get_all_handlers(), *registry._watching.get_all_handlers(),
                    *registry._spawning.get_all_handlers()]:
        selector = handler.selector
        # kopf keeps a positional resource name as any_name (a plural, kind or short name).
        plural = selector.plural or selector.any_name
        assert isinstance(plural, str) and plural.islower() and plural.endswith("s"), \
            f"{selector}: name the resource by its plural so RBAC can be derived"
        watched.add((selector.group or "", plural))
    return watched


def required_grants() -> set[tuple[str, str, str]]:
    grants = {(g, r, v) for g, r, v, _ in api_calls_of_kube()}
    for group, plural in watched_resources():
        grants |= {(group, plural, "list"), (group, plural, "watch")}
    ref = StudyRef(name="s", namespace="n", uid="u").owner_reference()
    if ref.get("blockOwnerDeletion"):
        # OwnerReferencesPermissionEnforcement: setting blockOwnerDeletion needs this.
        grants.add((names.GROUP, f"{names.PLURAL}/finalizers", "update"))
    return grants


def _bound_rules(objects: list[dict], sa: str, sa_namespace: str) -> list[tuple[str | None, dict]]:
    """(namespace or None for cluster-wide, rule) of every rule bound to the ServiceAccount."""
    out = []
    for binding in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding"):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == sa and s["namespace"] == sa_namespace
                   for s in binding["subjects"]):
            continue
        ref = binding["roleRef"]
        role_ns = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        role = one(objects, ref["kind"], ref["name"]) if ref["kind"] == "ClusterRole" else next(
            r for r in find(objects, "Role", ref["name"]) if r["metadata"]["namespace"] == role_ns)
        scope = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        out += [(scope, rule) for rule in role["rules"]]
    return out


def _granted(rules) -> set[tuple[str, str, str]]:
    out = set()
    for _, rule in rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"wildcard in {rule}"
                    out.add((group, resource, verb))
    return out


# kopf's namespace observer runs only when kopf is given namespaces (not cluster-wide): it lists
# and watches them (kopf/_core/reactor/observation.py namespace_observer) and, forbidden, retries
# nine times before falling back. test_helm_install.py runs the operator and sees no 403.
NAMESPACED_FRAMEWORK_GRANTS = {("", "namespaces", "list"), ("", "namespaces", "watch")}


@pytest.mark.parametrize("sets, framework", [
    ([], FRAMEWORK_GRANTS),
    (["operator.watchNamespaces={research,staging}"], FRAMEWORK_GRANTS | NAMESPACED_FRAMEWORK_GRANTS),
], ids=["cluster-wide", "namespaced"])
def test_rbac_grants_exactly_what_the_code_uses(helm, sets, framework):
    objects = helm.template(sets=sets)
    granted = _granted(_bound_rules(objects, OPERATOR_SA, NAMESPACE))
    required = required_grants() | framework
    assert required - granted == set(), "the operator would be forbidden these calls"
    assert granted - required == set(), "grants no code uses"


def test_namespaced_mode_grants_nothing_on_studies_outside_the_watched_namespaces(helm):
    objects = helm.template(sets=["operator.watchNamespaces={research,staging}"])
    rules = _bound_rules(objects, OPERATOR_SA, NAMESPACE)
    cluster_wide = _granted([(s, r) for s, r in rules if s is None])
    assert cluster_wide <= FRAMEWORK_GRANTS | NAMESPACED_FRAMEWORK_GRANTS
    study_scopes = {s for s, r in rules if "jobs" in r["resources"]}
    assert study_scopes == {"research", "staging"}


def test_leases_are_granted_only_in_the_release_namespace_and_by_name(helm, default_objects):
    rules = [(s, r) for s, r in _bound_rules(default_objects, OPERATOR_SA, NAMESPACE)
             if "leases" in r["resources"]]
    assert {s for s, _ in rules} == {NAMESPACE}
    deployment = one(default_objects, "Deployment", f"{RELEASE}-operator")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for _, rule in rules:
        if set(rule["verbs"]) & {"get", "update"}:
            assert rule["resourceNames"] == [env["FTSCALE_LEASE_NAME"]]
        else:
            assert rule["verbs"] == ["create"]  # cannot be limited by name


def test_no_access_to_secrets_or_study_specs(default_objects):
    granted = _granted(_bound_rules(default_objects, OPERATOR_SA, NAMESPACE))
    assert not {g for g in granted if g[1] == "secrets"}
    assert not {v for g, r, v in granted if r == names.PLURAL} - {"list", "watch"}


def test_every_rbac_rule_is_commented_with_why():
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    uncommented = []
    for i, line in enumerate(lines):
        if re.match(r"\s*- apiGroups:", line):
            previous = lines[i - 1].strip()
            if not previous.startswith("#"):
                uncommented.append(f"rbac.yaml:{i + 1}: {line.strip()}")
    assert not uncommented, "rules without a comment saying why:\n" + "\n".join(uncommented)


def test_rbac_off_renders_no_rbac(helm):
    objects = helm.template(sets=["rbac.create=false"])
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")]


def test_required_grants_are_documented_for_platforms_that_bring_their_own_rbac():
    doc = (CHART.parents[1] / "docs" / "cluster-install.md").read_text()
    for group, resource, verb in sorted(required_grants() | FRAMEWORK_GRANTS | NAMESPACED_FRAMEWORK_GRANTS):
        assert re.search(rf"\|\s*`?{re.escape(group or 'core')}`?\s*\|\s*`?{re.escape(resource)}`?\s*\|[^\n]*\b{verb}\b", doc), \
            f"docs/cluster-install.md's RBAC table lacks {group or 'core'} {resource} {verb}"


def test_kube_request_is_the_only_transport():
    """Guard for the derivation above: no Kube method reaches the client around `request`."""
    for method_name, method in inspect.getmembers(Kube, inspect.isfunction):
        if method_name != "request":
            assert "self.api." not in inspect.getsource(method), f"Kube.{method_name} bypasses request()"
    calls = api_calls_of_kube()
    assert ("batch", "jobs", "create", "research") in calls
    assert (names.GROUP, f"{names.PLURAL}/status", "patch", "research") in calls
    assert json.dumps(sorted(calls, key=str))  # plain data only
