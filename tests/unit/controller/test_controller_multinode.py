"""One run on several nodes (models[].nodes > 1): the Indexed Job and its headless Service as
rendered, the names they get, the plan that creates the Service before the Job and deletes it
after the harvest, and the harvest of a Job whose pods of index > 0 report nothing."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest

from ftscale import results as rc
from ftscale.api import meta, outcomes, run_contract
from ftscale.controller import names
from ftscale.controller.desired import StudyRejected, desired_runs
from ftscale.controller.harvest import harvest_run, harvest_succeeded_pod
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.plan import plan
from ftscale.controller.reconciler import Reconciler
from ftscale.controller.templates import (StudyRef, multinode_name_problem, rendezvous_endpoint,
                                          rendezvous_service, rendezvous_service_name, run_job)

from controller_testkit import (NOW, SETTINGS, STUDY, FakeConfigMaps, job, pod, result, spec,
                               trainer_message)

# Kubernetes' own patterns: Service names are DNS-1035 labels, pod hostnames DNS-1123 labels.
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def two_node_spec(**execution):
    """tiny-2 runs on 2 nodes × 2 GPUs; tiny-1 stays a one-pod CPU run."""
    s = spec(**execution)
    s["models"][1]["nodes"] = 2
    return s


def runs_of(s, study=STUDY):
    return desired_runs(study.name, s)


def two_node_run(s, study=STUDY):
    return next(r for r in runs_of(s, study) if r.nodes == 2)


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"]


def env_of(container):
    return {e["name"]: e["value"] for e in container["env"]}


# ---- the manifests ----------------------------------------------------------------------------


def test_a_two_node_run_is_an_indexed_job_whose_pods_meet_on_index_0():
    s = two_node_spec()
    run = two_node_run(s)
    manifest = run_job(STUDY, s, run, SETTINGS)
    js = manifest["spec"]
    assert js["completionMode"] == "Indexed" and js["completions"] == 2 and js["parallelism"] == 2
    # the same failure policy as a one-pod run; backoffLimit counts pod failures, and a failed
    # attempt fails both pods: 2 retries of the run are 2 × 2 pod failures
    assert js["podFailurePolicy"] == outcomes.pod_failure_policy(names.RUN_CONTAINER)
    assert js["backoffLimit"] == 2 * 2
    assert "suspend" not in js and "ttlSecondsAfterFinished" not in js  # Kueue's, and after harvest
    job_name = manifest["metadata"]["name"]
    service = f"r{job_name}"
    assert pod_spec(manifest)["subdomain"] == service
    container = pod_spec(manifest)["containers"][0]
    endpoint = f"{job_name}-0.{service}:29400"
    assert container["command"] == [
        "python", "-m", "ftscale_trainer.launch", "torchrun", "--nnodes=2", "--nproc_per_node=2", "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}", f"--rdzv-id={run.run_id}", "-m", "ftscale_trainer",
        "--config", "/etc/ftscale/run.json", "--metrics-port", str(SETTINGS.trainer_metrics_port)]
    env = env_of(container)
    assert env["FTSCALE_NODES"] == "2" and env["FTSCALE_RDZV_ENDPOINT"] == endpoint
    assert env["FTSCALE_RUN_ID"] == run.run_id
    # every pod holds the model's GPUs
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert {"name": "rendezvous", "containerPort": 29400, "protocol": "TCP"} in container["ports"]


def test_the_headless_service_selects_the_jobs_pods_and_belongs_to_the_study():
    s = two_node_spec()
    run = two_node_run(s)
    service = rendezvous_service(STUDY, s, run)
    assert service["apiVersion"] == "v1" and service["kind"] == "Service"
    assert service["metadata"]["name"] == pod_spec(run_job(STUDY, s, run, SETTINGS))["subdomain"]
    assert service["metadata"]["namespace"] == "ns"
    assert service["metadata"]["ownerReferences"] == [STUDY.owner_reference()]
    assert service["metadata"]["labels"][names.LABEL_RUN] == run.run_id
    assert service["spec"]["clusterIP"] == "None"
    # the rendezvous happens before any pod is ready: the DNS records must not wait for it
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": run.job_name}


def test_one_node_runs_are_unchanged():
    s = two_node_spec()
    one = next(r for r in runs_of(s) if r.nodes == 1)
    manifest = run_job(STUDY, s, one, SETTINGS)
    assert "completionMode" not in manifest["spec"] and manifest["spec"]["completions"] == 1
    assert manifest["spec"]["backoffLimit"] == 2
    assert "subdomain" not in pod_spec(manifest)
    container = pod_spec(manifest)["containers"][0]
    assert container["command"][:3] == ["python", "-m", "ftscale_trainer"]
    assert "FTSCALE_NODES" not in env_of(container)


def test_a_cpu_run_on_two_nodes_starts_one_process_per_node():
    s = two_node_spec()
    s["models"][1]["gpus"] = 0
    command = pod_spec(run_job(STUDY, s, two_node_run(s), SETTINGS))["containers"][0]["command"]
    assert "--nnodes=2" in command and "--nproc_per_node=1" in command


def test_a_trainer_of_your_own_gets_the_rendezvous_in_its_environment():
    s = two_node_spec(command=["python", "/opt/my_trainer.py"])
    run = two_node_run(s)
    manifest = run_job(STUDY, s, run, SETTINGS)
    container = pod_spec(manifest)["containers"][0]
    assert container["command"][:2] == ["python", "/opt/my_trainer.py"]
    assert env_of(container)["FTSCALE_RDZV_ENDPOINT"] == rendezvous_endpoint(run.job_name)
    assert manifest["spec"]["completionMode"] == "Indexed"


def test_the_launcher_needs_a_rendezvous_for_several_nodes():
    with pytest.raises(ValueError, match="rendezvous"):
        run_contract.launcher(None, 8, nodes=4)
    assert run_contract.launcher(None, 8, nodes=4, rdzv_endpoint="h:1", rdzv_id="x")[:6] == [
        "python", "-m", "ftscale_trainer.launch", "torchrun", "--nnodes=4", "--nproc_per_node=8"]
    assert run_contract.launcher(["my-trainer"], 8, nodes=4) == ["my-trainer"]


# ---- names ------------------------------------------------------------------------------------


def test_service_names_are_dns_1035_labels_even_for_studies_named_with_a_digit_first():
    digit = StudyRef(name="7b-sweep", namespace="ns", uid="u")
    run = two_node_run(two_node_spec(), digit)
    assert run.job_name.startswith("7b-sweep-")
    service = rendezvous_service_name(run.job_name)
    assert DNS_1035.match(service) and service == f"r{run.job_name}"
    # a prefix on every name, not only on digit-led ones: no two studies share a Service
    assert rendezvous_service_name("1a-x") != rendezvous_service_name("r1a-x")


def test_the_longest_study_name_that_leaves_room_for_every_pod_hostname():
    for nodes in (2, 10, 11, 64):
        digits = len(str(nodes - 1))
        longest = "a" * (meta.MAX_STUDY_NAME - 1 - digits)
        job_name = f"{longest}-{'x' * meta.RUN_ID_LENGTH}"
        assert multinode_name_problem(job_name, nodes) is None
        hostname = f"{job_name}-{nodes - 1}"
        assert len(hostname) == 63 and DNS_1123.match(hostname)
        service = rendezvous_service_name(job_name)
        assert len(service) <= 63 and DNS_1035.match(service)
        problem = multinode_name_problem(f"a{job_name}", nodes)
        assert problem and f"{len(longest)} characters or fewer" in problem
    assert multinode_name_problem("x" * 63, 1) is None  # one pod: any Job name


def test_a_study_name_too_long_for_its_multi_node_runs_is_rejected_before_any_job_starts():
    s = two_node_spec()
    s["models"][1]["nodes"] = 16
    long_name = "a" * meta.MAX_STUDY_NAME  # a valid study name, but <job>-15 would be 66 long
    with pytest.raises(StudyRejected, match=r"model tiny-2: .*shorten the study's name to 49"):
        desired_runs(long_name, s)
    assert desired_runs("a" * 49, s)  # fits


# ---- the harvest ------------------------------------------------------------------------------


def _finished_two_node_job(run, **kw):
    return replace(job(run, finished="Complete", **kw), name=run.job_name)


def test_the_result_comes_from_the_pod_that_reported_it_not_the_last_to_finish():
    s = two_node_spec()
    run = two_node_run(s)
    j = _finished_two_node_job(run)
    rank0 = pod(j.name, run, index=0, at=NOW - 8, message=trainer_message(result(run, 2.25)))
    rank1 = pod(j.name, run, index=1, at=NOW - 6, message=None)  # exits 0 with no message
    for pods in ([rank0, rank1], [rank1, rank0]):
        got = harvest_run(STUDY.name, run.key, j, pods, NOW, 30.0, nodes=2)
        assert got.result.ok and got.result.test_loss == 2.25
    # index 1 finishing first changes nothing either
    early1 = replace(rank1, finished_at=NOW - 9)
    assert harvest_run(STUDY.name, run.key, j, [rank0, early1], NOW, 30.0, nodes=2).result.test_loss == 2.25


def test_without_a_valid_result_the_pod_that_wrote_something_is_named():
    s = two_node_spec()
    run = two_node_run(s)
    j = _finished_two_node_job(run)
    rank0 = pod(j.name, run, index=0, at=NOW - 8, message="{not json")
    rank1 = pod(j.name, run, index=1, at=NOW - 6, message=None)
    got = harvest_run(STUDY.name, run.key, j, [rank0, rank1], NOW, 30.0, nodes=2).result
    assert got.reason == outcomes.BAD_RESULT and "{not json" in got.message


def test_one_pod_keeps_its_behaviour_a_bad_message_is_a_bad_result():
    run = runs_of(spec())[0]
    j = job(run, finished="Complete")
    got = harvest_run(STUDY.name, run.key, j, [pod(j.name, run, message="garbage")], NOW, 30.0)
    assert got.result.reason == outcomes.BAD_RESULT and "garbage" in got.result.message
    empty = harvest_run(STUDY.name, run.key, j, [pod(j.name, run, message=None)], NOW, 30.0)
    assert empty.result.reason == outcomes.BAD_RESULT and "empty termination message" in empty.result.message


def test_a_failed_two_node_run_reports_rank_0s_own_reason():
    s = two_node_spec()
    run = two_node_run(s)
    j = replace(job(run, finished="Failed", reason="BackoffLimitExceeded"), name=run.job_name)
    nan = result(run, outcome=rc.FAILED, reason=rc.NON_FINITE_LOSS, test_loss=None,
                 message="loss is nan at step 12")
    rank0 = pod(j.name, run, index=0, phase="Failed", exit_code=1, at=NOW - 8,
                message=trainer_message(nan))
    rank1 = pod(j.name, run, index=1, phase="Failed", exit_code=1, at=NOW - 6,
                message="torch.distributed.elastic...ChildFailedError")
    got = harvest_run(STUDY.name, run.key, j, [rank0, rank1], NOW, 30.0, nodes=2).result
    assert got.reason == rc.NON_FINITE_LOSS


def test_early_harvest_takes_rank_0s_pod_and_ignores_the_empty_ones():
    s = two_node_spec()
    run = two_node_run(s)
    rank1 = pod(run.job_name, run, index=1, message=None)
    assert harvest_succeeded_pod(STUDY.name, run.key, run.job_name, [rank1]) is None
    rank0 = pod(run.job_name, run, index=0, message=trainer_message(result(run, 2.0)))
    got = harvest_succeeded_pod(STUDY.name, run.key, run.job_name, [rank1, rank0])
    assert got.result.test_loss == 2.0


# ---- the plan and the reconciler --------------------------------------------------------------


def test_the_plan_creates_the_service_of_each_new_multi_node_run_and_deletes_it_after_harvest():
    s = two_node_spec(maxParallelRuns=8)
    grid = runs_of(s)
    p = plan(STUDY, s, None, grid, [], [], NOW, SETTINGS)
    multi = [r for r in grid if r.nodes == 2]
    assert len(p.create_jobs) == len(grid)
    assert [m["metadata"]["name"] for m in p.create_services] == [
        rendezvous_service_name(r.job_name) for r in multi]
    # harvested: its Service goes; GPU-seconds count the GPUs of both nodes
    run = multi[0]
    j = _finished_two_node_job(run)
    done = pod(j.name, run, message=trainer_message(result(run, 2.0, gpu_seconds=None)))
    after = plan(STUDY, s, None, grid, [j], [done], NOW, SETTINGS)
    assert after.delete_services == [rendezvous_service_name(run.job_name)]
    assert after.create_services == [m for m in after.create_services
                                     if m["metadata"]["name"] != rendezvous_service_name(run.job_name)]
    recorded = next(h.result for h in after.harvested if h.run_id == run.run_id)
    assert recorded.gpu_seconds == pytest.approx(12.5 * 2 * 2)
    one = next(r for r in grid if r.nodes == 1)
    j1 = job(one, finished="Complete")
    plain = plan(STUDY, s, None, grid, [j1], [pod(j1.name, one, message=trainer_message(result(one)))],
                 NOW, SETTINGS)
    assert plain.delete_services == []


class ServiceKube(FakeConfigMaps):
    """Records the API calls of one pass; a Service create can be made to fail."""

    def __init__(self, fail_service: str | None = None):
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.fail_service = fail_service

    def create_service(self, manifest):
        name = manifest["metadata"]["name"]
        self.calls.append(("service", name))
        if name == self.fail_service:
            raise RuntimeError("API hiccup")
        return True

    def create_job(self, manifest):
        self.calls.append(("job", manifest["metadata"]["name"]))
        return True

    def set_job_ttl(self, ns, name, ttl):
        self.calls.append(("ttl", name))

    def delete_service(self, ns, name):
        self.calls.append(("delete-service", name))

    def put_configmap_data(self, manifest, data, exists, field="data"):
        self.calls.append(("configmap", manifest["metadata"]["name"]))
        super().put_configmap_data(manifest, data, exists, field)

    def patch_study_status(self, ns, name, status, old, rv):
        self.calls.append(("status", ""))
        return None

    def post_event(self, *args):
        pass


def _one_pass(kube, s):
    r = Reconciler(replace(SETTINGS, write_interval_seconds=0.0), kube, OperatorMetrics(),
                   lambda key: [], lambda key: [])
    r.observe_study("ADDED", {"metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1",
                                           "generation": 1, "resourceVersion": "5"},
                              "spec": s, "status": {}})

    async def go():
        await r.reconcile(("ns", "demo"))
        await r.drain()
    asyncio.run(go())
    return r


def test_the_reconciler_creates_each_service_before_any_job_and_no_job_without_its_service():
    s = two_node_spec(maxParallelRuns=8)
    multi = [r for r in runs_of(s) if r.nodes == 2]
    kube = ServiceKube()
    _one_pass(kube, s)
    kinds = [k for k, _ in kube.calls if k in ("service", "job")]
    assert kinds.count("service") == len(multi) and kinds.count("job") == len(runs_of(s))
    assert kinds.index("job") > max(i for i, k in enumerate(kinds) if k == "service")
    failing = rendezvous_service_name(multi[0].job_name)
    kube = ServiceKube(fail_service=failing)
    r = _one_pass(kube, s)
    created = {n for k, n in kube.calls if k == "job"}
    assert multi[0].job_name not in created and multi[1].job_name in created
    # not expected any more: the next pass plans the Service and the Job again
    assert multi[0].job_name not in r.studies[("ns", "demo")].expected
