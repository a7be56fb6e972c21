"""One run on two nodes, on the real control plane: the operator (its own process) creates the
headless Service and the Indexed Job exactly as ftscale.controller.templates renders them, the
API server accepts both (a Service name that must start with a letter, for a study whose name
starts with a digit), the Job controller creates 2 pods named `<job>-0` / `<job>-1` under the
Service's subdomain, and the harvest takes rank 0's result while the pod of index 1 exits 0
with an empty message; then the Service is deleted. The rendezvous itself (torchrun, c10d) is
tested on CPU in tests/trainer/test_trainer_multinode.py: KWOK runs no containers."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import pytest
from kubernetes.client.rest import ApiException

from cluster.study_results import study_results
from ftscale.controller import names
from ftscale.controller.desired import desired_runs
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import (StudyRef, rendezvous_service, rendezvous_service_name,
                                          run_job)

from operator_testkit import (FAST_ENV, create_study, crd, finish, get_study,  # noqa: F401
                              operators, run_jobs, study_manifest, wait_until)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

STUDY = "7b-multinode"  # a digit first: a valid study name, but not a valid Service name
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def differences(stored, rendered, path=""):
    """Where `stored` (what the API server kept) lacks or changes something of `rendered`.
    The server adds defaults and its own labels; it may write a number as a string
    (resource quantities)."""
    if isinstance(rendered, dict):
        if not isinstance(stored, dict):
            return [f"{path}: stored {stored!r}"]
        out = []
        for key, value in rendered.items():
            if key not in stored:
                out.append(f"{path}.{key}: missing")
            else:
                out += differences(stored[key], value, f"{path}.{key}")
        return out
    if isinstance(rendered, list):
        if not isinstance(stored, list) or len(stored) != len(rendered):
            return [f"{path}: stored {stored!r}, rendered {rendered!r}"]
        return [d for i, (s, r) in enumerate(zip(stored, rendered))
                for d in differences(s, r, f"{path}[{i}]")]
    if stored != rendered and str(stored) != str(rendered):
        return [f"{path}: stored {stored!r}, rendered {rendered!r}"]
    return []


def raw(call, *args):
    """The object as the API server returns it (camelCase JSON, not client models)."""
    return json.loads(call(*args, _preload_content=False).data)


def test_a_two_node_run_is_an_indexed_job_and_a_headless_service_on_the_api_server(
        crd, operators, namespace, custom_objects_api, batch_api, core_api):
    operators.start()
    manifest = study_manifest(STUDY, models=("tiny-1",), data_sizes=(100,))
    manifest["spec"]["models"][0].update(nodes=2, gpus=1)
    create_study(custom_objects_api, namespace, manifest)
    job = wait_until(lambda: run_jobs(batch_api, namespace, STUDY), 60, "the run Job")[0]
    job_name = job.metadata.name
    service_name = rendezvous_service_name(job_name)
    assert service_name == f"r{job_name}"

    # What the operator would render for this study, with the operator process's settings.
    stored_study = get_study(custom_objects_api, namespace, STUDY)
    meta = stored_study["metadata"]
    ref = StudyRef(name=STUDY, namespace=namespace, uid=meta["uid"], generation=meta["generation"])
    settings = replace(OperatorSettings.from_env({**os.environ, **FAST_ENV}),
                       trainer_image="ftscale/trainer:test")
    (run,) = desired_runs(STUDY, stored_study["spec"])
    assert run.nodes == 2 and run.job_name == job_name

    stored_job = raw(batch_api.read_namespaced_job, job_name, namespace)
    rendered_job = run_job(ref, stored_study["spec"], run, settings)
    assert differences(stored_job, rendered_job) == []
    assert stored_job["spec"]["completionMode"] == "Indexed"
    assert stored_job["spec"]["completions"] == stored_job["spec"]["parallelism"] == 2
    stored_service = raw(core_api.read_namespaced_service, service_name, namespace)
    assert differences(stored_service, rendezvous_service(ref, stored_study["spec"], run)) == []
    assert stored_service["spec"]["clusterIP"] == "None"
    # created before the Job (second resolution: not after it)
    assert stored_service["metadata"]["creationTimestamp"] <= stored_job["metadata"]["creationTimestamp"]

    # The Job controller: 2 pods, hostnames <job>-<index> under the Service's subdomain.
    def job_pods():
        pods = core_api.list_namespaced_pod(
            namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}").items
        running = [p for p in pods if p.status.phase == "Running" and p.spec.node_name]
        return running if len(running) == 2 else None

    pods = wait_until(job_pods, 60, "2 running pods of the Job")
    by_index = {int(p.metadata.annotations[INDEX_ANNOTATION]): p for p in pods}
    assert sorted(by_index) == [0, 1]
    for index, pod in by_index.items():
        assert pod.spec.hostname == f"{job_name}-{index}"
        assert pod.spec.subdomain == service_name
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["FTSCALE_RDZV_ENDPOINT"] == f"{job_name}-0.{service_name}:29400"
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"

    # Rank 0 reports, index 1 exits 0 with nothing to say; index 1 finishes last.
    finish(core_api, by_index[0], STUDY)
    finish(core_api, by_index[1], STUDY, message="")
    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, STUDY))
                       .get("status", {}).get("runsSucceeded") == 1 and s, 60, "the harvest")
    (recorded,) = study_results(core_api, namespace, STUDY).values()
    assert recorded.run_id == run.run_id and recorded.ok
    assert recorded.test_loss == pytest.approx(2.5)  # result_message(): 1.5 + 100 / D

    def service_gone():
        try:
            core_api.read_namespaced_service(service_name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    wait_until(service_gone, 60, "the Service deleted after the harvest")
    labels = stored_job["spec"]["template"]["metadata"]["labels"]
    assert labels[names.LABEL_RUN] == run.run_id
