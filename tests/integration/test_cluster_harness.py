"""The test control plane is real: API validation, scheduling onto KWOK GPU nodes, Jobs that
complete, garbage collection, Helm — and the harness's own promises (loud failure, no process
left behind, the kubelet helper). See docs/control-plane.md."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from cluster import paths
from cluster.control_plane import COMPONENTS, ControlPlaneError, LocalControlPlane
from cluster.kubelet import HOLD_KEY, complete_pod, wait_for_pod
from cluster.waiting import wait_until

TESTDATA = Path(__file__).resolve().parents[1] / "cluster" / "testdata"
WAIT_S = 60


def job_condition(batch_api, namespace, name):
    """'Complete' / 'Failed' once the Job controller has decided, else None."""
    job = batch_api.read_namespaced_job_status(name, namespace)
    for cond in job.status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond.type
    return None


def job_pods(core_api, namespace, job_name):
    return core_api.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
    ).items


def make_job(name, gpus=0, labels=None, annotations=None, backoff_limit=0):
    resources = client.V1ResourceRequirements(
        limits={"nvidia.com/gpu": str(gpus)} if gpus else None,
        requests={"cpu": "100m"},
    )
    return client.V1Job(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1JobSpec(
            backoff_limit=backoff_limit,
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels, annotations=annotations),
                spec=client.V1PodSpec(
                    restart_policy="Never",
                    containers=[client.V1Container(name="trainer", image="registry.invalid/trainer:0",
                                                   resources=resources)],
                ),
            ),
        ),
    )


# ---- the API server itself -----------------------------------------------------------------

def test_version_is_the_pinned_release(cluster, k8s_api_client):
    if cluster.local is None:
        pytest.skip("external cluster: its version is not ours to pin")
    pinned = dict(
        line.split("=", 1) for line in (paths.HERE / "versions.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    info = client.VersionApi(k8s_api_client).get_code()
    assert info.git_version == pinned["KUBERNETES_VERSION"]
    assert (info.major, info.minor) == tuple(pinned["KUBERNETES_VERSION"].lstrip("v").split(".")[:2])


def test_rbac_is_enforced(cluster, namespace):
    """A ServiceAccount with no role may not list pods: authorization is really RBAC."""
    cluster.kubectl("-n", namespace, "create", "serviceaccount", "nobody")
    proc = cluster.kubectl("-n", namespace, "auth", "can-i", "list", "pods",
                           f"--as=system:serviceaccount:{namespace}:nobody", check=False)
    assert proc.stdout.strip() == "no"
    admin = cluster.kubectl("-n", namespace, "auth", "can-i", "list", "pods")
    assert admin.stdout.strip() == "yes"


def test_crd_validation_rejects_bad_objects(cluster, namespace, custom_objects_api, apiextensions_api):
    cluster.kubectl("apply", "--server-side", "-f", str(TESTDATA / "crd-widgets.yaml"))
    wait_until(lambda: any(
        c.type == "Established" and c.status == "True"
        for c in apiextensions_api.read_custom_resource_definition("widgets.harness.ftscale.test").status.conditions or []
    ), what="CRD Established")

    def create(spec):
        body = {"apiVersion": "harness.ftscale.test/v1", "kind": "Widget",
                "metadata": {"generateName": "w-"}, "spec": spec}
        # The CRD's REST endpoint can lag "Established" by a moment on a fresh API server.
        for _ in range(50):
            try:
                return custom_objects_api.create_namespaced_custom_object(
                    "harness.ftscale.test", "v1", namespace, "widgets", body)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                time.sleep(0.1)
        raise AssertionError("widgets endpoint never appeared")

    good = create({"gpus": 4})
    assert good["spec"] == {"gpus": 4, "minGpus": 0}  # the schema's default was applied

    with pytest.raises(ApiException) as too_many:
        create({"gpus": 9})
    assert too_many.value.status == 422
    assert "spec.gpus" in too_many.value.body and "less than or equal to 8" in too_many.value.body

    with pytest.raises(ApiException) as cel:
        create({"gpus": 2, "minGpus": 3})
    assert cel.value.status == 422 and "minGpus must not exceed gpus" in cel.value.body

    with pytest.raises(ApiException) as missing:
        create({})
    assert missing.value.status == 422 and "spec.gpus: Required value" in missing.value.body


# ---- scheduling and KWOK -------------------------------------------------------------------

def test_gpu_job_lands_on_gpu_node_and_completes(kwok_gpu_nodes, namespace, batch_api, core_api):
    batch_api.create_namespaced_job(namespace, make_job("gpu-run", gpus=2))
    assert wait_until(lambda: job_condition(batch_api, namespace, "gpu-run"), what="Job condition") == "Complete"
    (pod,) = job_pods(core_api, namespace, "gpu-run")
    assert pod.spec.node_name in kwok_gpu_nodes
    node = core_api.read_node(pod.spec.node_name)
    assert node.status.allocatable["nvidia.com/gpu"] == "8"
    assert pod.status.phase == "Succeeded"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_kwok_keeps_node_leases_fresh(kwok_gpu_nodes, k8s_api_client):
    """Without renewed leases the node-lifecycle controller would taint the nodes unreachable
    after 50 s and evict pods — long test sessions depend on this."""
    leases = client.CoordinationV1Api(k8s_api_client)

    def renewed():
        lease = leases.read_namespaced_lease(kwok_gpu_nodes[0], "kube-node-lease")
        return lease.spec.renew_time

    first = wait_until(renewed, what="a node lease")
    assert wait_until(lambda: renewed() > first, timeout=30, what="a lease renewal")


def test_pod_asking_more_gpus_than_any_node_stays_unschedulable(kwok_gpu_nodes, namespace, core_api):
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="too-big"),
        spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(
            name="c", image="registry.invalid/x:0",
            resources=client.V1ResourceRequirements(limits={"nvidia.com/gpu": "9"}))]),
    )
    core_api.create_namespaced_pod(namespace, pod)

    def unschedulable():
        status = core_api.read_namespaced_pod_status("too-big", namespace).status
        return next((c for c in status.conditions or []
                     if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"), None)

    cond = wait_until(unschedulable, what="PodScheduled=False")
    assert "nvidia.com/gpu" in cond.message


def test_kwok_annotations_choose_exit_code_and_message(kwok_gpu_nodes, namespace, batch_api, core_api):
    annotations = {"ftscale.test/exit-code": "3", "ftscale.test/termination-message": '{"outcome": "failed"}'}
    batch_api.create_namespaced_job(namespace, make_job("kwok-fail", annotations=annotations))
    assert wait_until(lambda: job_condition(batch_api, namespace, "kwok-fail"), what="Job condition") == "Failed"
    (pod,) = job_pods(core_api, namespace, "kwok-fail")
    term = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, term.exit_code, term.reason, term.message) == (
        "Failed", 3, "Error", '{"outcome": "failed"}')


def test_held_pod_is_finished_by_the_kubelet_helper(kwok_gpu_nodes, namespace, batch_api, core_api):
    """The operator's harvest path: KWOK keeps the pod Running; we finish it as a kubelet."""
    batch_api.create_namespaced_job(namespace, make_job("held-ok", labels={HOLD_KEY: "true"}))
    batch_api.create_namespaced_job(namespace, make_job("held-bad", annotations={HOLD_KEY: "true"}))
    pods = wait_until(lambda: (job_pods(core_api, namespace, "held-ok")
                               and job_pods(core_api, namespace, "held-bad")), what="pods")
    ok_pod = job_pods(core_api, namespace, "held-ok")[0]
    bad_pod = job_pods(core_api, namespace, "held-bad")[0]
    assert pods

    # Held: Running on a node and still Running a while later (KWOK does not complete it).
    wait_for_pod(core_api, ok_pod, lambda p: p["status"].get("phase") == "Running", what="Running")
    time.sleep(2)
    assert core_api.read_namespaced_pod(ok_pod.metadata.name, namespace).status.phase == "Running"
    assert job_condition(batch_api, namespace, "held-ok") is None

    result = json.dumps({"schema": 1, "test_loss": 2.31, "outcome": "succeeded"})
    done = complete_pod(core_api, ok_pod, exit_code=0, message=result)
    assert done.status.phase == "Succeeded"
    failed = complete_pod(core_api, bad_pod, exit_code=137, message="x" * 5000, reason="OOMKilled")
    assert failed.status.phase == "Failed"

    assert wait_until(lambda: job_condition(batch_api, namespace, "held-ok"), what="Job condition") == "Complete"
    assert wait_until(lambda: job_condition(batch_api, namespace, "held-bad"), what="Job condition") == "Failed"
    term = core_api.read_namespaced_pod(ok_pod.metadata.name, namespace).status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, json.loads(term.message)) == (0, "Completed", json.loads(result))
    bad = core_api.read_namespaced_pod(bad_pod.metadata.name, namespace).status.container_statuses[0].state.terminated
    assert (bad.exit_code, bad.reason, len(bad.message)) == (137, "OOMKilled", 4096)


# ---- controllers -----------------------------------------------------------------------------

def test_garbage_collector_cascades_through_owner_references(namespace, core_api, batch_api):
    owner = core_api.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner",
                                  uid=owner.metadata.uid, block_owner_deletion=True)
    job = make_job("owned", labels={HOLD_KEY: "true"})  # held: its pod exists until GC removes it
    job.metadata.owner_references = [ref]
    batch_api.create_namespaced_job(namespace, job)
    child = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[ref]))
    core_api.create_namespaced_config_map(namespace, child)
    wait_until(lambda: job_pods(core_api, namespace, "owned"), what="the Job's pod")

    core_api.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")

    def gone():
        names = {cm.metadata.name for cm in core_api.list_namespaced_config_map(namespace).items}
        jobs = batch_api.list_namespaced_job(namespace).items
        return not ({"owner", "child"} & names) and not jobs and not job_pods(core_api, namespace, "owned")

    wait_until(gone, what="owner, child ConfigMap, Job and pod deleted")


def test_helm_installs_a_chart(cluster, kwok_gpu_nodes, namespace, cluster_binaries, core_api):
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           "HELM_CACHE_HOME": str(cluster.kubeconfig.parent / "helm-cache"),
           "HELM_CONFIG_HOME": str(cluster.kubeconfig.parent / "helm-config"),
           "HELM_DATA_HOME": str(cluster.kubeconfig.parent / "helm-data")}
    helm = [str(cluster_binaries.helm), "--namespace", namespace]
    proc = subprocess.run(
        [*helm, "install", "probe", str(TESTDATA / "chart"), "--set", "greeting=hi",
         "--wait", "--timeout", "90s"],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert core_api.read_namespaced_config_map("probe-config", namespace).data == {"greeting": "hi"}
    deploy = client.AppsV1Api(core_api.api_client).read_namespaced_deployment("probe-probe", namespace)
    assert deploy.status.ready_replicas == 2
    listed = subprocess.run([*helm, "list", "-o", "json"], env=env, capture_output=True, text=True, check=True)
    assert [(r["name"], r["status"]) for r in json.loads(listed.stdout)] == [("probe", "deployed")]
    subprocess.run([*helm, "uninstall", "probe", "--wait"], env=env, capture_output=True, text=True,
                   check=True, timeout=120)
    with pytest.raises(ApiException) as exc:
        core_api.read_namespaced_config_map("probe-config", namespace)
    assert exc.value.status == 404


# ---- the tools and the harness's own promises ----------------------------------------------

def test_promtool_checks_rules(cluster_binaries, tmp_path):
    ok = subprocess.run([str(cluster_binaries.promtool), "check", "rules", str(TESTDATA / "rules-valid.yaml")],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m] > 0\n")
    proc = subprocess.run([str(cluster_binaries.promtool), "check", "rules", str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0


def _assert_no_process_of(plane: LocalControlPlane):
    assert plane.running_pids() == {}
    # Nothing else in the process table runs from this state folder either.
    stray = subprocess.run(["pgrep", "-f", str(plane.state_dir)], capture_output=True, text=True)
    assert stray.stdout.strip() == "", stray.stdout


@pytest.mark.cluster
@pytest.mark.slow
def test_second_cluster_is_idempotent_and_stops_when_its_owner_dies(cluster_binaries, tmp_path):
    """up twice gives the same cluster; killing the owner process stops every component."""
    plane = LocalControlPlane(tmp_path / "second", gpu_nodes=1, cpu_nodes=0)
    owner = subprocess.Popen(["sleep", "300"])
    try:
        kubeconfig = plane.start(owner_pid=owner.pid)
        first = plane.running_pids()
        assert set(first) == {*COMPONENTS, "watchdog"}
        assert plane.start() == kubeconfig  # already up: same state, same processes
        assert plane.running_pids() == first
        nodes = subprocess.run([str(cluster_binaries.kubectl), "--kubeconfig", str(kubeconfig),
                                "get", "nodes", "-o", "name"], capture_output=True, text=True, check=True)
        assert nodes.stdout.split() == ["node/kwok-gpu-0"]
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        wait_until(lambda: not plane.running_pids(), timeout=40, what="every component stopped")
        _assert_no_process_of(plane)
    finally:
        owner.kill()
        plane.stop()


@pytest.mark.cluster
def test_broken_component_fails_loudly_and_leaves_nothing(cluster_binaries, tmp_path):
    """A kube-apiserver that cannot start: up.sh fails, names it, shows its log, stops etcd."""
    plane = LocalControlPlane(tmp_path / "broken", gpu_nodes=0, cpu_nodes=0)
    pki = plane.state_dir / "pki"
    subprocess.run([str(paths.HERE / "pki.sh"), str(pki)], check=True, capture_output=True)
    (pki / "apiserver.crt").write_text("not a certificate\n")
    with pytest.raises(ControlPlaneError) as failure:
        plane.start()
    text = str(failure.value)
    assert "FAILED: kube-apiserver" in text
    assert "last 60 lines of" in text and "apiserver.crt" in text  # the component's own log
    assert "stopped etcd" in text
    _assert_no_process_of(plane)
