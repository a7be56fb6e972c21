"""Helpers for the operator's integration tests: the CRD, the operator as a real process
(`python -m ftscale operator`, exactly what the image runs), study manifests whose pods the
test finishes itself (KWOK holds them), and polling."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from cluster.kubelet import HOLD_KEY, complete_pod
from producers import example_fit_message, trainer_message
from cluster.waiting import wait_until
from ftscale import results as rc
from ftscale.controller import names

REPO = Path(__file__).resolve().parents[2]
# ftscale.spec.crd_path(): crds/scalingstudy.yaml, or $FTSCALE_CRD when set (one source of truth).
from ftscale.spec import crd_path  # noqa: E402

CRD_PATH = crd_path()
CRD_NAME = f"{names.PLURAL}.{names.GROUP}"

# Fast timers for tests (production defaults are in ftscale.controller.settings).
FAST_ENV = {
    "FTSCALE_BATCH_SECONDS": "0.1",
    "FTSCALE_RESYNC_SECONDS": "5",
    "FTSCALE_RESULT_GRACE_SECONDS": "3",
    "FTSCALE_LEASE_DURATION_SECONDS": "4",
    "FTSCALE_LEASE_RENEW_SECONDS": "1",
    "FTSCALE_LOG_FORMAT": "plain",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the CRD ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def crd(apiextensions_api):
    """Install the ScalingStudy CRD from crds/ unless present; remove it after the module if we
    installed it (other suites, e.g. a Helm install, may want to own it)."""
    manifest = yaml.safe_load(CRD_PATH.read_text())

    def current():
        try:
            return apiextensions_api.read_custom_resource_definition(CRD_NAME)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None

    # A CRD still being deleted (by the previous module) must be gone before we create it.
    wait_until(lambda: (c := current()) is None or not c.metadata.deletion_timestamp, 120, "old CRD gone")
    created = False
    if current() is None:
        apiextensions_api.create_custom_resource_definition(manifest)
        created = True

    def established():
        obj = current()
        return obj is not None and any(c.type == "Established" and c.status == "True"
                                       for c in obj.status.conditions or ())

    wait_until(established, 30, "CRD Established")
    yield CRD_NAME
    if created:
        apiextensions_api.delete_custom_resource_definition(CRD_NAME)
        wait_until(lambda: current() is None, 120, "CRD deleted")


# ---- the operator process --------------------------------------------------------------------
@dataclass
class OperatorProcess:
    proc: subprocess.Popen
    log_path: Path
    metrics_port: int
    health_port: int
    identity: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def metrics(self) -> str:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def health(self) -> dict:
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=5) as r:
            return json.loads(r.read().decode() or "{}")


class OperatorLauncher:
    def __init__(self, kubeconfig: str, namespace: str, tmp: Path):
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.tmp = tmp
        self.started: list[OperatorProcess] = []

    def start(self, identity: str = "op-1", leader_election: bool = True, wait_ready: bool = True,
              **env: str) -> OperatorProcess:
        metrics_port, health_port = free_port(), free_port()
        log_path = self.tmp / f"operator-{identity}-{len(self.started)}.log"
        cmd = [sys.executable, "-m", "ftscale", "operator", "--kubeconfig", self.kubeconfig,
               "--namespace", self.namespace, "--metrics-port", str(metrics_port),
               "--health-port", str(health_port), "--lease-namespace", self.namespace,
               "--identity", identity, "--trainer-image", "ftscale/trainer:test"]
        if not leader_election:
            cmd.append("--no-leader-election")
        full_env = {**os.environ, **FAST_ENV, **env,
                    "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}"}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)
        op = OperatorProcess(proc, log_path, metrics_port, health_port, identity)
        self.started.append(op)
        if wait_ready:
            def ready():
                if not op.alive():
                    raise RuntimeError(f"operator exited with {proc.returncode}:\n{op.log()[-3000:]}")
                try:
                    return op.health() is not None
                except OSError:
                    return False
            wait_until(ready, 60, "operator liveness endpoint")
        return op

    def stop_all(self) -> None:
        for op in self.started:
            op.stop()


@pytest.fixture
def operators(kubeconfig_path, namespace, tmp_path):
    launcher = OperatorLauncher(kubeconfig_path, namespace, tmp_path)
    yield launcher
    launcher.stop_all()
    # Captured output: pytest shows it only when the test failed.
    for op in launcher.started:
        print(f"---- operator {op.identity} log (tail) ----\n{op.log()[-6000:]}")


def lease_holder(namespace: str, k8s_api_client, name: str = "ftscale-operator") -> str | None:
    """Who holds the operator's Lease (the truth; /healthz caches probe results for 10 s)."""
    api = client.CoordinationV1Api(k8s_api_client)
    try:
        return api.read_namespaced_lease(name, namespace).spec.holder_identity or None
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# ---- studies ---------------------------------------------------------------------------------
def study_manifest(name: str, *, models=("tiny-1", "tiny-2"), data_sizes=(100, 200), methods=None,
                   hold: bool = True, **execution) -> dict[str, Any]:
    """A small study whose run pods KWOK holds Running until the test finishes them."""
    execution = {"maxParallelRuns": 8, "backoffLimit": 1, **execution}
    if hold:
        execution.setdefault("labels", {})[HOLD_KEY] = "true"
    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND,
        "metadata": {"name": name},
        "spec": {
            "task": {"name": "toy-en-de"},
            "models": [{"name": m, "source": f"toy:{m}", "parameters": 1000 * 4 ** i}
                       for i, m in enumerate(models)],
            "methods": methods or [{"name": "fmt"}],
            "dataSizes": list(data_sizes),
            "seeds": [0],
            "execution": execution,
        },
    }


def create_study(api: client.CustomObjectsApi, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return api.create_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, manifest)


def get_study(api: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    return api.get_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL, name)


def condition(study: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in (study.get("status") or {}).get("conditions") or () if c["type"] == kind), None)


def run_jobs(batch_api: client.BatchV1Api, namespace: str, study: str, component: str = "run"):
    return batch_api.list_namespaced_job(
        namespace, label_selector=f"{names.LABEL_STUDY}={study},{names.LABEL_COMPONENT}={component}").items


def study_pods(core_api: client.CoreV1Api, namespace: str, study: str, component: str = "run"):
    return core_api.list_namespaced_pod(
        namespace, label_selector=f"{names.LABEL_STUDY}={study},{names.LABEL_COMPONENT}={component}").items


def running_pods(core_api, namespace, study, component="run"):
    return [p for p in study_pods(core_api, namespace, study, component)
            if p.status.phase == "Running" and p.spec.node_name and not p.metadata.deletion_timestamp]


def result_message(pod, study: str, loss: float | None = None, **over) -> str:
    """The compact result JSON the trainer would write for this pod's run."""
    labels = pod.metadata.labels
    pet = labels[names.LABEL_PET_SIZE]
    data_size = int(labels[names.LABEL_DATA_SIZE])
    model = labels[names.LABEL_MODEL]
    doc = dict(study=study, run_id=labels[names.LABEL_RUN], model=model,
               method=labels[names.LABEL_METHOD], pet_size=None if pet == "none" else int(pet),
               data_size=data_size, seed=int(labels[names.LABEL_SEED]),
               test_loss=loss if loss is not None else round(1.5 + 100.0 / data_size, 4),
               best_dev_loss=1.4, model_params=1000, wall_seconds=1.0, steps=10)
    doc.update(over)
    return trainer_message(rc.RunResult(**doc))  # exactly what the trainer writes (producers.py)


def finish(core_api, pod, study: str, exit_code: int = 0, message: str | None = None, **kw):
    if message is None and exit_code == 0:
        message = result_message(pod, study)
    return complete_pod(core_api, pod, exit_code=exit_code, message=message or "", **kw)


def fit_summary_message(study: str = "demo") -> str:
    """A fit pod's termination message as the fit Job writes it: the fit Job's own entry point
    run on planted results (tests/producers.py; cached, it costs a fit)."""
    return example_fit_message(study)


def bound_claim(core_api, namespace: str, name: str, storage_class: str = "manual",
                access_mode: str = "ReadWriteOnce") -> str:
    """A PVC bound to a PV of its own (the scheduler places no pod whose claim is unbound);
    returns the PV's name (cluster-scoped: the caller deletes it)."""
    pv = f"{namespace}-{name}"[:63]
    core_api.create_persistent_volume({
        "metadata": {"name": pv, "labels": {"ftscale.test/namespace": "true"}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": [access_mode],
                 "storageClassName": storage_class, "hostPath": {"path": "/nonexistent"},
                 "claimRef": {"namespace": namespace, "name": name}}})
    core_api.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name},
        "spec": {"accessModes": [access_mode], "storageClassName": storage_class,
                 "volumeName": pv, "resources": {"requests": {"storage": "1Gi"}}}})
    return pv
