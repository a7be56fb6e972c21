"""The operator's Kubernetes API calls: a thin, synchronous layer over the `kubernetes`
client's ApiClient (raw JSON in and out — no model classes, which are slow for 1,000-run
studies). Every verb the operator uses is here; docs/operator.md lists them for RBAC.

Creating something that already exists is success (deterministic names: a create after a
restart or a lagging cache is never a duplicate). Calls run in the reconciler's thread pool.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from ftscale.controller import names

log = logging.getLogger("ftscale.operator.kube")

MERGE_PATCH = "application/merge-patch+json"


class Conflict(Exception):
    """A write lost an optimistic-concurrency race (HTTP 409 on update/patch): re-read, retry."""


class NotFound(Exception):
    """The object is gone (HTTP 404)."""


def load_api_client(kubeconfig: str | None = None, pool_size: int = 8) -> client.ApiClient:
    """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG or
    ~/.kube/config, or the explicit path)."""
    configuration = client.Configuration()
    try:
        if kubeconfig:
            raise config.ConfigException("explicit kubeconfig")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return client.ApiClient(configuration)


# In a pod, the service account's namespace (mounted by the kubelet with its token).
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def own_namespace(kubeconfig: str | None = None) -> str:
    """The operator's own namespace: its pod's (in a cluster), else the kubeconfig current
    context's, else "default" — as kubectl picks a namespace."""
    try:
        with open(IN_CLUSTER_NAMESPACE_FILE, encoding="utf-8") as handle:
            found = handle.read().strip()
            if found:
                return found
    except OSError:
        pass
    try:
        _contexts, current = config.list_kube_config_contexts(config_file=kubeconfig)
        found = (current or {}).get("context", {}).get("namespace")
        if found:
            return found
    except (config.ConfigException, OSError, TypeError):
        pass
    return "default"


class Kube:
    """Raw-JSON API calls. Raises Conflict/NotFound for 409/404 where callers care, else the
    client's ApiException (the reconciler counts it and retries the pass)."""

    def __init__(self, api: client.ApiClient, component: str = names.MANAGED_BY, identity: str = ""):
        self.api = api
        self.component = component
        self.identity = identity

    # ---- transport ----
    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: list[tuple[str, str]] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        request = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body, auth_settings=["BearerToken"])
        response = self.api.call_api(*request, _request_timeout=timeout)
        data = response.read()
        if response.status == 404:
            raise NotFound(f"{method} {path}: not found")
        if response.status == 409:
            raise Conflict(f"{method} {path}: {_message(data, response.reason)}")
        if not 200 <= response.status < 300:
            raise ApiException(status=response.status,
                               reason=f"{method} {path}: {_message(data, response.reason)}")
        return json.loads(data) if data else {}

    # ---- Jobs (batch/v1) ----
    def create_job(self, manifest: Mapping[str, Any]) -> bool:
        """POST a Job; True if created, False if it already existed (success: same name =
        same run)."""
        ns = manifest["metadata"]["namespace"]
        try:
            self.request("POST", f"/apis/batch/v1/namespaces/{ns}/jobs", manifest)
            return True
        except Conflict:
            return False

    def set_job_ttl(self, namespace: str, name: str, ttl: int) -> None:
        """PATCH spec.ttlSecondsAfterFinished (done only after the result is in status)."""
        try:
            self.request("PATCH", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                         {"spec": {"ttlSecondsAfterFinished": int(ttl)}}, MERGE_PATCH)
        except NotFound:
            pass  # already gone: nothing left to expire

    def delete_job(self, namespace: str, name: str) -> None:
        """DELETE a Job and (in the background) its pods."""
        try:
            self.request("DELETE", f"/apis/batch/v1/namespaces/{namespace}/jobs/{name}",
                         {"propagationPolicy": "Background"})
        except NotFound:
            pass

    # ---- rendezvous Services of runs on several nodes (core/v1) ----
    def create_service(self, manifest: Mapping[str, Any]) -> bool:
        """POST a Service; True if created, False if it already existed (success: its name is
        derived from the run's Job name)."""
        ns = manifest["metadata"]["namespace"]
        try:
            self.request("POST", f"/api/v1/namespaces/{ns}/services", manifest)
            return True
        except Conflict:
            return False

    def delete_service(self, namespace: str, name: str) -> None:
        """DELETE a Service (gone already is fine)."""
        try:
            self.request("DELETE", f"/api/v1/namespaces/{namespace}/services/{name}")
        except NotFound:
            pass

    # ---- the results and fit-input ConfigMaps (core/v1) ----
    def put_configmap_data(self, manifest: Mapping[str, Any], data: Mapping[str, str], exists: bool,
                           field: str = "data", adopt: bool = False) -> None:
        """Add keys to a ConfigMap's `field` (data or binaryData): merge-PATCH them, or create
        the ConfigMap with them when it does not exist yet. `exists` is the caller's belief; it
        is corrected on 404/409. `adopt`: the PATCH also sets the manifest's ownerReferences
        (a ConfigMap left by a deleted namesake study is taken over, not garbage-collected
        under the new study's feet)."""
        ns = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        path = f"/api/v1/namespaces/{ns}/configmaps"
        if not exists:
            try:
                self.request("POST", path, {**manifest, field: dict(data)})
                return
            except Conflict:
                pass
        patch: dict[str, Any] = {field: dict(data)}
        owners = manifest["metadata"].get("ownerReferences")
        if adopt and owners:
            patch["metadata"] = {"ownerReferences": owners}
        try:
            self.request("PATCH", f"{path}/{name}", patch, MERGE_PATCH)
        except NotFound:
            self.request("POST", path, {**manifest, field: dict(data)})

    def put_configmap_binary(self, manifest: Mapping[str, Any], data: Mapping[str, str]) -> None:
        """Create or replace a ConfigMap's binaryData keys (base64 values), owned by the
        manifest's owner (the fit input: a deleted namesake's is adopted)."""
        self.put_configmap_data(manifest, data, False, field="binaryData", adopt=True)

    def list_configmaps(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The ConfigMaps of a namespace that match a label selector (paged, 100 at a time)."""
        items: list[dict[str, Any]] = []
        token = ""
        while True:
            query = [("labelSelector", label_selector), ("limit", "100")]
            if token:
                query.append(("continue", token))
            page = self.request("GET", f"/api/v1/namespaces/{namespace}/configmaps", query=query)
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return items

    # ---- ScalingStudy status ----
    def patch_study_status(self, namespace: str, name: str, status: Mapping[str, Any],
                           old_status: Mapping[str, Any] | None, resource_version: str | None) -> dict[str, Any]:
        """Merge-PATCH /status with the whole new status (keys that disappeared are nulled);
        with resourceVersion as a precondition, so a write based on a stale read fails with
        Conflict instead of losing results. Returns the updated object."""
        body_status = dict(status)
        for key in old_status or ():
            if key not in body_status:
                body_status[key] = None
        body: dict[str, Any] = {"status": body_status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        return self.request(
            "PATCH",
            f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/{names.PLURAL}/{name}/status",
            body, MERGE_PATCH)

    # ---- Events (core/v1) ----
    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str, now_text: str) -> None:
        meta = involved["metadata"]
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": names.API_VERSION, "kind": names.KIND,
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "firstTimestamp": now_text, "lastTimestamp": now_text, "count": 1,
            "source": {"component": self.component},
            "reportingComponent": self.component, "reportingInstance": self.identity or self.component,
        }
        self.request("POST", f"/api/v1/namespaces/{meta['namespace']}/events", event)

    # ---- Leases (coordination.k8s.io/v1), for leader election ----
    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.request("GET", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}")
        except NotFound:
            return None

    def create_lease(self, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases",
                            {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                             "metadata": {"name": name, "namespace": namespace}, "spec": dict(spec)})

    def update_lease(self, lease: Mapping[str, Any]) -> dict[str, Any]:
        meta = lease["metadata"]
        return self.request(
            "PUT", f"/apis/coordination.k8s.io/v1/namespaces/{meta['namespace']}/leases/{meta['name']}",
            lease)


def _message(data: bytes | None, fallback: str | None) -> str:
    """The API's Status message, else the HTTP reason."""
    try:
        return json.loads(data or b"").get("message") or str(fallback)
    except (TypeError, ValueError, AttributeError):
        return str(fallback)
