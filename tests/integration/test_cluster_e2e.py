"""The cluster path end to end, with no canned result anywhere: the real control plane
(tests/cluster), the operator as its own process (`python -m ftscale operator`), and the
process kubelet (tests/cluster/process_kubelet.py) running every run pod's real trainer
(`python -m ftscale_trainer`) and the fit pod's real fit Job (`python -m ftscale.law.job`) as
local processes, from the pod specs the operator wrote.

A study of two toy models × FMT and LoRA × four data sizes with the default held-out setting
reaches Fitted; its status.fit is a FitSummary with laws, and the operator's /metrics shows
ftscale_fit_parameter. Next to it, a run whose loss diverges (exit 3, NonFiniteLoss) fails its
Job through the podFailurePolicy without a retry. The first test checks the process kubelet's
own promises (paths, ConfigMap and downward-API files, the termination message and its
fallback to the log, SIGTERM on deletion, PVC folders) on plain pods.
"""

from __future__ import annotations

import json
import time

import pytest
from kubernetes.client.rest import ApiException

from cluster.kubelet import HOLD_KEY
from cluster.process_kubelet import ProcessKubelet
from cluster.waiting import wait_until
from cluster.study_results import study_results
from ftscale.api.fit_summary import FitSummary
from ftscale.api.outcomes import EXIT_NON_FINITE_LOSS, NON_FINITE_LOSS
from ftscale.controller import names

from operator_testkit import (bound_claim, condition, create_study, crd,  # noqa: F401
                              get_study, operators, run_jobs, study_pods)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

# The study's pods are held from KWOK and run by the process kubelet (its module docstring).
PROCESS_HOLD = {HOLD_KEY: "process"}


@pytest.fixture
def process_kubelet(core_api, namespace, tmp_path):
    kubelet = ProcessKubelet(core_api, namespace, workdir=tmp_path / "kubelet", max_parallel=2,
                             hold_values={"process"})
    kubelet.start()
    yield kubelet
    kubelet.stop()
    # Captured output: pytest shows it only when the test failed.
    for done in kubelet.finished:
        print(f"{done.name} ({done.component}): exit {done.exit_code} in {done.seconds:.1f}s "
              f"reported={done.reported}\n  message: {done.message[:300]}")
        if done.exit_code != 0:
            print(f"  log tail:\n{done.log_tail}")
    print("errors:", kubelet.errors)


# ------------------------------------------------------------------ the kubelet's promises
def _pod(name: str, script: str, *, volumes=(), mounts=(), policy="File", grace=30) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {names.LABEL_COMPONENT: "run", **PROCESS_HOLD},
                     "annotations": {"note": "from the downward API"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": grace,
                 "automountServiceAccountToken": False,  # a projected token: not supported
                 "containers": [{
                     "name": "main", "image": "ftscale/trainer:test",
                     "command": ["python", "-c", script],
                     "args": ["/dev/termination-log", "/etc/cm/greeting", "/etc/pod/note", "/data"],
                     "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": "SCRATCH", "value": "/scratch/x"}],
                     "terminationMessagePolicy": policy,
                     "volumeMounts": [{"name": "cm", "mountPath": "/etc/cm"},
                                      {"name": "pod", "mountPath": "/etc/pod"},
                                      {"name": "scratch", "mountPath": "/scratch"},
                                      {"name": "data", "mountPath": "/data"}, *mounts]}],
                 "volumes": [{"name": "cm", "configMap": {"name": "greetings"}},
                             {"name": "pod", "downwardAPI": {"items": [{
                                 "path": "note", "fieldRef": {"fieldPath": "metadata.annotations['note']"}}]}},
                             {"name": "scratch", "emptyDir": {}},
                             {"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
                             *volumes]},
    }


WRITE_MESSAGE = """
import os, sys
term, greeting, note, data = sys.argv[1:5]
assert os.environ["SCRATCH"].endswith("/volumes/scratch/x"), os.environ["SCRATCH"]
open(os.path.join(data, "seen-by-" + os.environ["POD_NAME"]), "w").write("x")
open(term, "w").write(open(greeting).read() + "|" + open(note).read() + "|" + os.environ["POD_NAME"])
"""
FAIL_WITH_LOGS = """
import sys
for i in range(100):
    print("log line", i)
sys.exit(5)
"""
WAIT_FOR_SIGTERM = """
import os, signal, sys, time
data = sys.argv[4]
def bye(*_):
    open(os.path.join(data, "got-sigterm"), "w").write("bye")
    sys.exit(143)
signal.signal(signal.SIGTERM, bye)
open(os.path.join(data, "started"), "w").write("x")
time.sleep(120)
"""


def _terminated(core_api, namespace, name):
    def check():
        pod = core_api.read_namespaced_pod(name, namespace)
        statuses = pod.status.container_statuses or []
        return statuses and statuses[0].state.terminated and (pod, statuses[0].state.terminated)
    return wait_until(check, 90, f"pod {name} terminated")


def test_process_kubelet_runs_pods_as_their_spec_says(core_api, namespace, process_kubelet):
    core_api.create_namespaced_config_map(namespace, {"metadata": {"name": "greetings"},
                                                      "data": {"greeting": "hello"}})
    bound_claim(core_api, namespace, "shared", storage_class="process-kubelet")  # a local folder
    core_api.create_namespaced_pod(namespace, _pod("writes", WRITE_MESSAGE))
    core_api.create_namespaced_pod(namespace, _pod("fails", FAIL_WITH_LOGS, policy="FallbackToLogsOnError"))
    pod, term = _terminated(core_api, namespace, "writes")
    assert (term.exit_code, term.reason, term.message) == (0, "Completed", "hello|from the downward API|writes")
    assert pod.status.phase == "Succeeded"
    pod, term = _terminated(core_api, namespace, "fails")
    assert (term.exit_code, term.reason, pod.status.phase) == (5, "Error", "Failed")
    assert term.message.endswith("log line 99\n") and "log line 19\n" not in term.message
    pvc = process_kubelet.pvc_root / namespace / "shared"
    assert (pvc / "seen-by-writes").exists()

    core_api.create_namespaced_pod(namespace, _pod("sleeps", WAIT_FOR_SIGTERM, grace=5))
    wait_until(lambda: (pvc / "started").exists(), 60, "the sleeping process started")
    core_api.delete_namespaced_pod("sleeps", namespace)
    done = wait_until(lambda: [f for f in process_kubelet.finished if f.name == "sleeps"], 30, "SIGTERM handled")[0]
    assert done.exit_code == 143 and (pvc / "got-sigterm").read_text() == "bye"
    assert not process_kubelet.errors
    core_api.delete_persistent_volume(f"{namespace}-shared"[:63])


# -------------------------------------------------------------------- the study, end to end
def _study(name: str, **spec) -> dict:
    return {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": name},
            "spec": {"task": {"name": "toy-en-de"}, "seeds": [0],
                     # tiny settings: one epoch of each data size, small evaluation sets
                     "training": {"maxEpochs": 1, "batchSize": 8},
                     "evaluation": {"devExamples": 16, "testExamples": 32}, **spec}}


# Two models with the DEFAULT held-out setting (largest X and largest D held out): four data
# sizes leave the fit 6 points per law, one more than the multiplicative law's minimum.
E2E_STUDY = _study(
    "e2e",
    models=[{"name": "tiny-1", "source": "toy:tiny-1"}, {"name": "tiny-2", "source": "toy:tiny-2"}],
    methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4]}],
    dataSizes=[25, 50, 100, 200],
    law={"bootstrap": 20},  # the default 200 costs a minute of this machine's CPU
    execution={"maxParallelRuns": 2, "backoffLimit": 1, "labels": PROCESS_HOLD})
# A learning rate that makes the loss NaN within two steps: exit 3, not retriable.
DIVERGING_STUDY = _study(
    "diverges",
    models=[{"name": "tiny-1", "source": "toy:tiny-1"}], methods=[{"name": "fmt"}],
    dataSizes=[25], training={"maxEpochs": 1, "batchSize": 8, "learningRate": 1e30},
    execution={"maxParallelRuns": 1, "backoffLimit": 2, "labels": PROCESS_HOLD})
RUNS = 2 * 2 * 4


def _job_failed_by_policy(batch_api, namespace):
    jobs = run_jobs(batch_api, namespace, "diverges")
    for job in jobs:
        for c in job.status.conditions or ():
            if c.type == "Failed" and c.status == "True":
                return job, c
    return None


def test_study_reaches_fitted_through_the_real_trainer_and_fit_job(
        crd, operators, namespace, process_kubelet, custom_objects_api, batch_api, core_api):
    started = time.monotonic()
    op = operators.start()
    create_study(custom_objects_api, namespace, DIVERGING_STUDY)  # first: its pod runs first
    create_study(custom_objects_api, namespace, E2E_STUDY)

    # The diverging run: one pod, exit 3, the Job failed by its podFailurePolicy (no retry
    # although backoffLimit is 2).
    job, failed = wait_until(lambda: _job_failed_by_policy(batch_api, namespace), 120, "diverging Job failed")
    assert failed.reason == "PodFailurePolicy", (failed.reason, failed.message)
    pods = core_api.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}").items
    assert len(pods) == 1
    term = pods[0].status.container_statuses[0].state.terminated
    assert term.exit_code == EXIT_NON_FINITE_LOSS and json.loads(term.message)["reason"] == NON_FINITE_LOSS
    diverged = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "diverges"))
                          .get("status", {}).get("runsFailed") == 1 and s, 60, "the failure harvested")
    assert diverged["status"]["recentFailures"][0]["reason"] == NON_FINITE_LOSS
    (recorded,) = study_results(core_api, namespace, "diverges").values()
    assert recorded.reason == NON_FINITE_LOSS

    def fitted():
        study = get_study(custom_objects_api, namespace, "e2e")
        status = study.get("status") or {}
        assert status.get("phase") not in ("Failed",), json.dumps(status, indent=1)[:3000]
        return status.get("phase") == "Fitted" and study
    study = wait_until(fitted, 240, "study e2e Fitted", interval=1)
    status = study["status"]
    assert status["runsSucceeded"] == RUNS and status["progress"] == f"{RUNS}/{RUNS}"
    losses = {rid: r.test_loss for rid, r in study_results(core_api, namespace, "e2e").items()}
    assert len(set(losses.values())) == RUNS and all(0 < v < 20 for v in losses.values())
    assert condition(study, "Fitted")["status"] == "True"

    summary = FitSummary.parse(status["fit"])
    assert summary.laws, status["fit"]
    assert {law.method for law in summary.laws} == {"fmt", "lora"}
    assert all(law.factor == "model_size" for law in summary.laws)
    # fit_status writes every key; the merge patch drops the null ones
    assert status["fit"]["phase"] == "Succeeded" and status["fit"].get("reason") is None

    # every run and the fit ran here, as processes (none was completed by KWOK)
    ours = [f for f in process_kubelet.finished if f.name.startswith("e2e-")]
    assert sum(f.component == "run" for f in ours) == RUNS
    assert [f.exit_code for f in ours if f.component == "fit"] == [0]
    assert all(f.reported for f in ours)

    text = wait_until(lambda: "ftscale_fit_parameter{" in (t := op.metrics()) and t, 30, "fit metrics")
    lines = [line for line in text.splitlines()
             if line.startswith("ftscale_fit_parameter{") and 'study="e2e"' in line]
    assert any('parameter="alpha"' in line and 'method="fmt"' in line for line in lines), lines
    print(f"e2e study Fitted {time.monotonic() - started:.0f}s after the operator started; "
          f"status.fit: {json.dumps(status['fit'])}")
