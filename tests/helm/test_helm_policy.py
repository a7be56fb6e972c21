"""Least privilege for study users: the chart's user ClusterRoles (aggregated into edit/view)
and the operator's allow-lists for images and ServiceAccounts."""

from __future__ import annotations


def _env(objects):
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_user_roles_aggregate_into_edit_and_view_and_never_grant_status_writes(helm):
    roles = {o["metadata"]["name"]: o for o in helm.template() if o["kind"] == "ClusterRole"}
    edit = next(r for n, r in roles.items() if n.endswith("-edit"))
    view = next(r for n, r in roles.items() if n.endswith("-view"))
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert all("scalingstudies/status" not in rule["resources"] for rule in edit["rules"])
    assert {v for rule in view["rules"] for v in rule["verbs"]} == {"get", "list", "watch"}
    off = helm.template(sets=["rbac.userRoles=false"])
    assert not any(o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith(("-edit", "-view"))
                   for o in off)


def test_the_allow_lists_reach_the_operator(helm):
    env = _env(helm.template(sets=["policy.allowedImages={registry.example/ml/*}",
                                         "policy.allowedServiceAccounts={trainer,fit}"]))
    assert env["FTSCALE_ALLOWED_IMAGES"] == "registry.example/ml/*"
    assert env["FTSCALE_ALLOWED_SERVICE_ACCOUNTS"] == "trainer,fit"
    assert "FTSCALE_ALLOWED_IMAGES" not in _env(helm.template())  # no list: any image
