"""pytest plugin: a real Kubernetes control plane for integration tests.

Registered in tests/conftest.py (`pytest_plugins = ["cluster.fixtures"]`). Fixtures:

  cluster (session)         TestCluster: .kubeconfig (Path), .kubectl(...) runner, .local
                            (the LocalControlPlane, or None on an external cluster). Brings a
                            fresh control plane up once per test session (about 15-30 s) and
                            stops it at the end; with FTSCALE_TEST_KUBECONFIG=/path set, uses
                            that cluster instead and starts nothing.
  kubeconfig_path (session) str path of the admin kubeconfig.
  k8s_api_client (session)  kubernetes.client.ApiClient for that kubeconfig.
  core_api / batch_api / custom_objects_api / apiextensions_api (session)  typed APIs on it.
  namespace (function)      a fresh namespace per test (its `default` ServiceAccount exists,
                            so pods can be created at once); deleted after the test.
  cluster_binaries (session) ClusterBinaries: kubectl, helm, promtool paths. Builds (cached)
                            but starts no cluster — for chart linting or rule checking.
  kwok_gpu_nodes (session)  names of the KWOK GPU nodes; SKIPS the test on a cluster without
                            them (an external FTSCALE_TEST_KUBECONFIG cluster without KWOK), for
                            tests that rely on the KWOK pod lifecycle described below.

Any test that uses `cluster` (directly or through the fixtures above) is marked `cluster`
automatically, so `-m "not cluster"` deselects it.

Pods of Jobs are completed by KWOK (exit 0) as soon as they run. To control the outcome:
  * label or annotate the pod `ftscale.test/hold` (any value): KWOK leaves it Running; finish
    it with cluster.kubelet.complete_pod(core_api, pod, exit_code, message, reason=None);
  * or annotate it `ftscale.test/exit-code`, `ftscale.test/termination-message`,
    `pod-complete.stage.kwok.x-k8s.io/delay` ("3s") and let KWOK finish it that way.
Nodes: kwok-gpu-0..3 (nvidia.com/gpu: 8, label ftscale.test/pool=gpu) and kwok-cpu-0..1.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from . import paths
from .control_plane import LocalControlPlane

KUBECONFIG_ENV = "FTSCALE_TEST_KUBECONFIG"
NAMESPACE_LABEL = "ftscale.test/namespace"
CLUSTER_FIXTURE_NAMES = frozenset({
    "cluster", "kubeconfig_path", "k8s_api_client", "core_api", "batch_api",
    "custom_objects_api", "apiextensions_api", "namespace", "kwok_gpu_nodes",
})
GPU_POOL_SELECTOR = "ftscale.test/pool=gpu"


@dataclass(frozen=True)
class ClusterBinaries:
    """Paths of the built command-line tools (same versions as the control plane)."""

    bin_dir: Path
    kubectl: Path
    helm: Path
    promtool: Path


@dataclass(frozen=True)
class TestCluster:
    """The cluster a test session runs against."""

    __test__ = False  # not a test class, despite its name

    kubeconfig: Path
    kubectl_path: Path
    local: LocalControlPlane | None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises CalledProcessError (with stderr) when check."""
        proc = subprocess.run(
            [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if CLUSTER_FIXTURE_NAMES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster_binaries() -> ClusterBinaries:
    bin_dir = paths.ensure_built()
    return ClusterBinaries(bin_dir, bin_dir / "kubectl", bin_dir / "helm", bin_dir / "promtool")


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
            cluster_binaries: ClusterBinaries) -> Iterator[TestCluster]:
    external = os.environ.get(KUBECONFIG_ENV)
    if external:
        path = Path(external).expanduser()
        if not path.is_file():
            raise pytest.UsageError(f"{KUBECONFIG_ENV}={external} is not a file")
        yield TestCluster(path, cluster_binaries.kubectl, None)
        return
    # A short, private state folder; pytest keeps the last few base temps for post-mortems.
    plane = LocalControlPlane(tmp_path_factory.mktemp("control-plane", numbered=True))
    try:
        kubeconfig = plane.start(owner_pid=os.getpid())
    except Exception:
        plane.stop()
        raise
    try:
        yield TestCluster(kubeconfig, cluster_binaries.kubectl, plane)
    finally:
        plane.stop()
        leftovers = plane.running_pids()
        if leftovers:
            raise RuntimeError(f"control-plane processes still running after down.sh: {leftovers}")
        if request.session.testsfailed == 0:
            shutil.rmtree(plane.state_dir / "etcd-data", ignore_errors=True)


@pytest.fixture(scope="session")
def kubeconfig_path(cluster: TestCluster) -> str:
    return str(cluster.kubeconfig)


@pytest.fixture(scope="session")
def k8s_api_client(cluster: TestCluster):
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(cluster.kubeconfig))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def core_api(k8s_api_client):
    from kubernetes import client

    return client.CoreV1Api(k8s_api_client)


@pytest.fixture(scope="session")
def batch_api(k8s_api_client):
    from kubernetes import client

    return client.BatchV1Api(k8s_api_client)


@pytest.fixture(scope="session")
def custom_objects_api(k8s_api_client):
    from kubernetes import client

    return client.CustomObjectsApi(k8s_api_client)


@pytest.fixture(scope="session")
def apiextensions_api(k8s_api_client):
    from kubernetes import client

    return client.ApiextensionsV1Api(k8s_api_client)


@pytest.fixture(scope="session")
def kwok_gpu_nodes(core_api) -> list[str]:
    nodes = core_api.list_node(label_selector=GPU_POOL_SELECTOR).items
    names = [n.metadata.name for n in nodes
             if (n.metadata.annotations or {}).get("kwok.x-k8s.io/node") == "fake"]
    if not names:
        pytest.skip(f"no KWOK nodes labelled {GPU_POOL_SELECTOR}: this test needs the harness's"
                    " KWOK stages (tests/cluster/kwok) to drive pod lifecycles")
    return names


def namespace_name_for(test_name: str) -> str:
    """A valid, unique namespace name derived from a test's name (≤ 63 chars, DNS label)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:44].strip("-") or "test"
    return f"t-{slug}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, core_api) -> Iterator[str]:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    name = namespace_name_for(request.node.name)
    core_api.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={NAMESPACE_LABEL: "true"}))
    )
    # Pod admission needs the namespace's `default` ServiceAccount, which the controller-manager
    # creates shortly after the namespace: wait for it so tests may create pods at once.
    deadline = time.monotonic() + 30
    while True:
        try:
            core_api.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        try:
            core_api.delete_namespace(name, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise
