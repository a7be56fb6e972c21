"""Builders shared by the controller unit tests: a small study, Jobs and Pods as the API
would return them (raw dicts), turned into the views the operator caches. Termination messages
are what the producers really write (tests/producers.py): the trainer's for runs, the fit Job's
for the fit."""

from __future__ import annotations

import copy

from ftscale import results as rc
from ftscale.controller import names
from ftscale.controller.desired import desired_runs
from ftscale.controller.observe import format_time, job_view, pod_view
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import StudyRef
from ftscale.identity import job_name

from producers import FIT_SPEC, example_fit_message, trainer_message  # noqa: F401

NOW = 1_800_000_000.0
SETTINGS = OperatorSettings(trainer_image="trainer:test", identity="test", result_grace_seconds=30.0)
STUDY = StudyRef(name="demo", namespace="ns", uid="uid-1", generation=1)

SPEC = {
    "task": {"name": "toy-en-de"},
    "models": [{"name": "tiny-1", "source": "toy:tiny-1", "parameters": 1000},
               {"name": "tiny-2", "source": "toy:tiny-2", "parameters": 4000, "gpus": 2}],
    "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4]}],
    "dataSizes": [100, 200],
    "seeds": [0],
    "execution": {"image": "trainer:1", "maxParallelRuns": 3, "backoffLimit": 2},
}


def spec(**execution):
    out = copy.deepcopy(SPEC)
    out["execution"].update(execution)
    return out


def runs(s=None):
    return desired_runs(STUDY.name, s or SPEC)


def job(run, *, finished=None, reason=None, message=None, at=NOW - 5, suspended=False, ttl=None,
        component=names.COMPONENT_RUN, name=None, annotations=None, owner_uid=STUDY.uid):
    conditions = []
    if finished:
        conditions.append({"type": finished, "status": "True", "reason": reason, "message": message,
                           "lastTransitionTime": format_time(at)})
    labels = {names.LABEL_STUDY: STUDY.name, names.LABEL_COMPONENT: component}
    if run is not None:
        labels[names.LABEL_RUN] = run.run_id
    name = name or job_name(STUDY.name, run.key)
    body = {
        "metadata": {"name": name, "labels": labels, "uid": f"uid-{name}",
                     "ownerReferences": [{"kind": "ScalingStudy", "name": STUDY.name,
                                          "uid": owner_uid, "controller": True}],
                     "annotations": annotations or {}, "creationTimestamp": format_time(NOW - 100)},
        "spec": {"suspend": suspended, **({"ttlSecondsAfterFinished": ttl} if ttl is not None else {})},
        "status": {"conditions": conditions, "active": 0 if finished else 1},
    }
    return job_view(body)


def pod(job_name, run=None, *, phase="Succeeded", exit_code=0, message=None, reason=None,
        disrupted=False, at=NOW - 6, index=0, owner_uid=None):
    terminated = None
    if phase in ("Succeeded", "Failed"):
        terminated = {"exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                      "message": message, "finishedAt": format_time(at)}
    body = {
        "metadata": {"name": f"{job_name}-{index}",
                     "ownerReferences": [{"kind": "Job", "name": job_name,
                                          "uid": owner_uid or f"uid-{job_name}",
                                          "controller": True}],
                     "labels": {
            "batch.kubernetes.io/job-name": job_name, names.LABEL_STUDY: STUDY.name,
            **({names.LABEL_RUN: run.run_id} if run is not None else {})}},
        "status": {"phase": phase, "conditions": [{"type": "DisruptionTarget", "status": "True"}] if disrupted else [],
                   "containerStatuses": [{"name": names.RUN_CONTAINER, "state": (
                       {"terminated": terminated} if terminated else {"running": {}})}]},
    }
    return pod_view(body)


def result(run, loss=2.5, **over):
    key = run.key
    doc = dict(study=STUDY.name, run_id=run.run_id, model=key.model, method=key.method,
               pet_size=key.pet_size, data_size=key.data_size, seed=key.seed, test_loss=loss,
               best_dev_loss=loss - 0.1, model_params=1000, wall_seconds=12.5)
    doc.update(over)
    return rc.RunResult(**doc)


def succeeded(run, loss=2.5):
    """A finished run: its Complete Job and its Succeeded pod carrying the result JSON."""
    j = job(run, finished="Complete")
    return j, pod(j.name, run, message=trainer_message(result(run, loss)))


def fit_summary() -> str:
    """The fit pod's termination message: the fit Job's entry point on planted results."""
    return example_fit_message(STUDY.name)
