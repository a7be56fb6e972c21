"""The operator on the real control plane (kube-apiserver, etcd, controller-manager with the
Job, TTL and garbage collectors, scheduler, KWOK nodes), run as its own process
(`python -m ftscale operator`). Run pods are held Running by KWOK and finished by the test
with real termination messages, exactly as a kubelet reports them."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest
from kubernetes.client.rest import ApiException
from prometheus_client.parser import text_string_to_metric_families

from ftscale import results as rc
from ftscale.controller import names

from ftscale.api.fit_summary import FitSummary
from cluster.study_results import fit_input, study_results

from operator_testkit import (condition, create_study, crd, finish, fit_summary_message,  # noqa: F401
                              get_study, lease_holder, operators, run_jobs, running_pods, study_manifest,
                              study_pods, wait_until)

# Each test runs the operator process against the real control plane for 5-40 s.
pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _finish_all_running(core_api, ns, study, done: set[str], **kw) -> int:
    n = 0
    for pod in running_pods(core_api, ns, study):
        if pod.metadata.name in done:
            continue
        finish(core_api, pod, study, **kw)
        done.add(pod.metadata.name)
        n += 1
    return n


def _still_unfinished(batch_api, core_api, ns, job_name: str) -> bool:
    try:
        job = batch_api.read_namespaced_job(job_name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return False  # deleted by its TTL: it finished
        raise
    if job.status.completion_time:
        return False
    pods = core_api.list_namespaced_pod(ns, label_selector=f"batch.kubernetes.io/job-name={job_name}")
    return not any(p.status.phase == "Succeeded" for p in pods.items)


def test_happy_path_runs_harvests_fits_and_lets_ttl_delete_jobs(
        crd, operators, namespace, custom_objects_api, batch_api, core_api, k8s_api_client):
    op = operators.start()
    manifest = study_manifest("happy", maxParallelRuns=2, ttlSecondsAfterFinished=0)
    create_study(custom_objects_api, namespace, manifest)
    # parallelism is respected: never more than 2 unfinished Jobs
    wait_until(lambda: len(running_pods(core_api, namespace, "happy")) == 2, 60, "2 running pods")
    done: set[str] = set()
    max_unfinished = 0
    deadline = time.monotonic() + 90
    while len(done) < 4:
        assert time.monotonic() < deadline, f"only {len(done)} of 4 runs got a pod"
        # a run is finished when its pod succeeded (the Job controller marks the Job a moment later)
        jobs = run_jobs(batch_api, namespace, "happy")
        done_jobs = {p.metadata.labels.get("batch.kubernetes.io/job-name")
                     for p in study_pods(core_api, namespace, "happy") if p.status.phase == "Succeeded"}
        unfinished = [j for j in jobs if j.metadata.name not in done_jobs and not j.status.completion_time]
        if len(unfinished) > 2:
            # The Job and pod lists are two reads, not one snapshot: a Job listed just before its
            # pod succeeded and was garbage-collected (TTL 0) looks unfinished. Re-read suspects.
            unfinished = [j for j in unfinished
                          if _still_unfinished(batch_api, core_api, namespace, j.metadata.name)]
        max_unfinished = max(max_unfinished, len(unfinished))
        _finish_all_running(core_api, namespace, "happy", done)
        time.sleep(0.2)
    assert max_unfinished <= 2

    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "happy"))
                       .get("status", {}).get("runsSucceeded") == 4 and s, 60, "4 harvested results")
    assert "results" not in study["status"]  # per-run results live in ConfigMaps, not here
    results = study_results(core_api, namespace, "happy", study["metadata"]["uid"])
    assert len(results) == 4 and all(r.ok and r.test_loss is not None for r in results.values())
    assert study["status"]["progress"] == "4/4"
    # the fit Job: created once every run is terminal, reading the results ConfigMaps
    fit_pod = wait_until(lambda: running_pods(core_api, namespace, "happy", "fit"), 60, "fit pod")[0]
    shard = core_api.read_namespaced_config_map("happy-results-0", namespace)
    assert {f"{rid}.json" for rid in results} == set(shard.data)
    fit_doc = fit_input(core_api, namespace, "happy")
    assert len(fit_doc["results"]) == 4
    fit_input_doc = fit_doc
    assert [t["factor"] for t in fit_input_doc["factors"]["fmt"]] == ["model_size"]
    assert fit_pod.spec.automount_service_account_token is False
    message = fit_summary_message("happy")  # the fit Job's real output (tests/producers.py)
    finish(core_api, fit_pod, "happy", message=message)
    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "happy"))
                       and (condition(s, "Fitted") or {}).get("status") == "True" and s, 60, "Fitted")
    fit = study["status"]["fit"]
    written = FitSummary.parse(message)
    assert FitSummary.parse(fit) == written and written.laws
    fmt_law = next(law for law in written.laws if (law.method, law.form) == ("fmt", "multiplicative"))
    status_law = next(x for x in fit["laws"] if (x["method"], x["form"]) == ("fmt", "multiplicative"))
    assert status_law["params"] == dict(fmt_law.params) and status_law["factor"] == "model_size"
    assert fit["phase"] == "Succeeded" and fit["job"] == fit_pod.metadata.labels["batch.kubernetes.io/job-name"]
    assert condition(study, "Succeeded")["status"] == "True"
    assert condition(study, "Progressing")["status"] == "False"
    assert condition(study, "Fitted")["observedGeneration"] == study["metadata"]["generation"]
    assert study["status"]["phase"] == "Fitted"
    # TTL was set only after harvest, and the TTL controller then deleted the Jobs; results stay
    wait_until(lambda: not run_jobs(batch_api, namespace, "happy"), 60, "run Jobs deleted by TTL")
    assert get_study(custom_objects_api, namespace, "happy")["status"]["runsSucceeded"] == 4
    events = core_api.list_namespaced_event(namespace, field_selector="involvedObject.name=happy").items
    assert any(e.reason == "Fitted" for e in events)
    # /metrics and /healthz
    text = op.metrics()
    assert f'ftscale_study_runs{{namespace="{namespace}",phase="Succeeded",study="happy"}} 4.0' in text
    assert "ftscale_harvest_latency_seconds_count" in text
    alphas = [s.value for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "ftscale_fit_parameter" and s.labels.get("study") == "happy"
              and s.labels["method"] == "fmt" and s.labels["form"] == "multiplicative"
              and s.labels["parameter"] == "alpha"]
    assert alphas == [pytest.approx(fmt_law.params["alpha"])]
    assert "leader" in op.health()  # kopf's liveness endpoint with our probe fields
    assert lease_holder(namespace, k8s_api_client) == op.identity


def test_failures_retries_and_reasons(crd, operators, namespace, custom_objects_api, batch_api, core_api):
    operators.start()
    create_study(custom_objects_api, namespace,
                 study_manifest("fails", models=("tiny-1", "tiny-2"), data_sizes=(100, 200), backoffLimit=1))
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "fails")) == 4 and p, 60, "4 pods")
    by_run = {p.metadata.labels[names.LABEL_RUN]: p for p in pods}
    runs = sorted(by_run)
    crash, invalid, oom, preempted = runs
    finish(core_api, by_run[crash], "fails", exit_code=1, message="Traceback: RuntimeError: boom")
    finish(core_api, by_run[invalid], "fails", exit_code=2, message="config: unknown key 'lr'")
    finish(core_api, by_run[oom], "fails", exit_code=137, reason="OOMKilled")
    finish(core_api, by_run[preempted], "fails", exit_code=143, message="terminated",
           extra_conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}])

    def retry_of(run_id):
        pods = [p for p in running_pods(core_api, namespace, "fails")
                if p.metadata.labels[names.LABEL_RUN] == run_id]
        return pods[0] if pods else None

    # a plain crash is retried (backoffLimit 1): the retry succeeds
    finish(core_api, wait_until(lambda: retry_of(crash), 60, "retry of the crashed run"), "fails")
    # preemption does not count against backoffLimit: the new pod fails plainly once, then gets
    # its one real retry — which succeeds
    p2 = wait_until(lambda: retry_of(preempted), 60, "pod after preemption")
    finish(core_api, p2, "fails", exit_code=1, message="flaky")
    finish(core_api, wait_until(lambda: retry_of(preempted), 60, "retry after preemption"), "fails")
    # OOMKilled is retried once too, then the Job fails
    finish(core_api, wait_until(lambda: retry_of(oom), 60, "retry of the OOMKilled run"), "fails",
           exit_code=137, reason="OOMKilled")

    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "fails"))
                       .get("status", {}).get("progress") == "4/4" and s, 60, "all 4 runs terminal")
    by_id = study_results(core_api, namespace, "fails")
    assert by_id[crash].ok and by_id[preempted].ok
    assert by_id[invalid].reason == rc.INVALID_CONFIG and "unknown key" in by_id[invalid].message
    assert by_id[oom].reason == rc.OOM_KILLED
    recent = {e["runId"]: e for e in study["status"]["recentFailures"]}
    assert set(recent) == {invalid, oom} and recent[oom]["reason"] == rc.OOM_KILLED
    # exit 2 failed at once: one pod only, no retry
    pods_of_invalid = [p for p in study_pods(core_api, namespace, "fails")
                       if p.metadata.labels[names.LABEL_RUN] == invalid]
    assert len(pods_of_invalid) == 1
    assert study["status"]["runsFailed"] == 2
    # Events are posted right after the status write that records the failures
    failed_events = wait_until(lambda: len(e := [x for x in core_api.list_namespaced_event(
        namespace, field_selector="involvedObject.name=fails").items if x.reason == "RunFailed"]) == 2 and e,
        30, "two RunFailed events")
    assert any("OOMKilled" in e.message for e in failed_events)
    # default maxFailedRuns (-1): not degraded, the fit still runs
    assert condition(study, "Degraded")["status"] == "False"
    wait_until(lambda: run_jobs(batch_api, namespace, "fails", "fit"), 30, "fit Job")


def test_kueue_queue_label_passthrough_and_suspended_jobs_reported_queued(
        crd, operators, namespace, custom_objects_api, batch_api, core_api):
    operators.start()
    create_study(custom_objects_api, namespace,
                 study_manifest("queued", models=("tiny-1",), data_sizes=(100,), queueName="team-a"))
    job = wait_until(lambda: run_jobs(batch_api, namespace, "queued"), 60, "run Job")[0]
    assert job.metadata.labels[names.LABEL_KUEUE_QUEUE] == "team-a"
    # Kueue would have suspended the Job at admission time; do what it does, then check that
    # the operator reports it as queued and never touches `suspend`
    batch_api.patch_namespaced_job(job.metadata.name, namespace, {"spec": {"suspend": True}})
    wait_until(lambda: get_study(custom_objects_api, namespace, "queued").get("status", {}).get("runsQueued") == 1
               and not study_pods(core_api, namespace, "queued") or
               all(p.metadata.deletion_timestamp for p in study_pods(core_api, namespace, "queued")),
               60, "run reported queued")
    time.sleep(2)
    assert batch_api.read_namespaced_job(job.metadata.name, namespace).spec.suspend is True
    managed = batch_api.read_namespaced_job(job.metadata.name, namespace).metadata.managed_fields or []
    writers = {m.manager for m in managed if "suspend" in json.dumps(m.fields_v1 or {})}
    assert not any("python" in (w or "").lower() or "ftscale" in (w or "").lower() for w in writers), writers
    # "admission": Kueue unsuspends; the run proceeds normally
    batch_api.patch_namespaced_job(job.metadata.name, namespace, {"spec": {"suspend": False}})
    pod = wait_until(lambda: running_pods(core_api, namespace, "queued"), 60, "pod after admission")[0]
    finish(core_api, pod, "queued")
    wait_until(lambda: get_study(custom_objects_api, namespace, "queued").get("status", {}).get("runsSucceeded") == 1,
               60, "harvest after admission")


def test_restart_in_the_middle_creates_no_duplicate_and_loses_no_result(
        crd, operators, namespace, custom_objects_api, batch_api, core_api):
    first = operators.start("op-a")
    create_study(custom_objects_api, namespace,
                 study_manifest("restart", models=("tiny-1", "tiny-2", "tiny-3"), data_sizes=(100, 200),
                                maxParallelRuns=3, ttlSecondsAfterFinished=0))
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "restart")) == 3 and p, 60, "3 pods")
    finish(core_api, pods[0], "restart")
    wait_until(lambda: get_study(custom_objects_api, namespace, "restart").get("status", {}).get("runsSucceeded") == 1,
               60, "first harvest")
    # crash (no clean shutdown, lease not released), then finish a run while no operator runs
    first.stop(signal.SIGKILL)
    finish(core_api, pods[1], "restart")
    time.sleep(1)
    operators.start("op-b")  # takes over once op-a's lease has expired (4 s)
    done = {pods[0].metadata.name, pods[1].metadata.name}
    deadline = time.monotonic() + 90
    while (get_study(custom_objects_api, namespace, "restart").get("status", {}).get("progress") != "6/6"):
        _finish_all_running(core_api, namespace, "restart", done)
        assert time.monotonic() < deadline, "study did not finish after the restart"
        time.sleep(0.3)
    study = get_study(custom_objects_api, namespace, "restart")
    assert study["status"]["runsSucceeded"] == 6
    assert len(study_results(core_api, namespace, "restart", study["metadata"]["uid"])) == 6
    # every run had exactly one pod: no Job was created twice, none was lost
    per_run: dict[str, int] = {}
    for p in study_pods(core_api, namespace, "restart"):
        per_run[p.metadata.labels[names.LABEL_RUN]] = per_run.get(p.metadata.labels[names.LABEL_RUN], 0) + 1
    assert all(n == 1 for n in per_run.values()), per_run
    assert len(done) == 6


def test_deleting_a_study_garbage_collects_its_children(
        crd, operators, namespace, custom_objects_api, batch_api, core_api):
    operators.start()
    create_study(custom_objects_api, namespace, study_manifest("gone", data_sizes=(100,)))
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "gone")) == 2 and p, 60, "2 pods")
    finish(core_api, pods[0], "gone")
    wait_until(lambda: core_api.list_namespaced_config_map(
        namespace, label_selector=f"{names.LABEL_STUDY}=gone").items, 60, "results ConfigMap")
    study = get_study(custom_objects_api, namespace, "gone")
    assert not study["metadata"].get("finalizers")  # nothing external to clean up: no finalizer
    custom_objects_api.delete_namespaced_custom_object(names.GROUP, names.VERSION, namespace, names.PLURAL,
                                                       "gone", propagation_policy="Foreground")
    wait_until(lambda: not run_jobs(batch_api, namespace, "gone"), 60, "Jobs garbage-collected")
    wait_until(lambda: not core_api.list_namespaced_config_map(
        namespace, label_selector=f"{names.LABEL_STUDY}=gone").items, 60, "ConfigMap garbage-collected")

    def study_gone():
        try:
            get_study(custom_objects_api, namespace, "gone")
            return False
        except ApiException as exc:
            return exc.status == 404
    wait_until(study_gone, 60, "study deleted")


def test_two_replicas_only_the_leader_acts_and_the_other_takes_over(
        crd, operators, namespace, custom_objects_api, batch_api, core_api, k8s_api_client):
    a = operators.start("replica-a")
    b = operators.start("replica-b")
    holder = wait_until(lambda: lease_holder(namespace, k8s_api_client), 30, "a Lease holder")
    leader, standby = (a, b) if holder == a.identity else (b, a)
    create_study(custom_objects_api, namespace, study_manifest("pair", data_sizes=(100, 200), maxParallelRuns=2))
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "pair")) == 2 and p, 60, "2 pods")
    wait_until(lambda: re.search(r"study \S+/pair: created 2 run Jobs", leader.log()), 10, "leader's log line")
    assert not re.search(r"study \S+: created", standby.log())  # the standby never acted
    # the leader dies; the standby takes over and finishes the study
    leader.stop(signal.SIGKILL)
    done: set[str] = set()
    deadline = time.monotonic() + 90
    while get_study(custom_objects_api, namespace, "pair").get("status", {}).get("progress") != "4/4":
        _finish_all_running(core_api, namespace, "pair", done)
        assert time.monotonic() < deadline, "standby did not take over"
        time.sleep(0.3)
    assert lease_holder(namespace, k8s_api_client) == standby.identity
    assert "became the leader" in standby.log()
    assert len({p.metadata.labels[names.LABEL_RUN] for p in study_pods(core_api, namespace, "pair")}) == 4
