"""Builders shared by the controller unit tests: a small study, Jobs and Pods as the API
would return them (raw dicts), turned into the views the operator caches. Termination messages
are what the producers really write (tests/producers.py): the trainer's for runs, the fit Job's
for the fit."""

from __future__ import annotations

import asyncio
import copy

from ftscale import results as rc
from ftscale.controller.kube import Conflict, NotFound
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


def selector_matches(selector: str, labels: dict) -> bool:
    """An equality-based label selector (`k=v`, `k==v`, `k!=v`, `k`, `!k`, comma = and), as the
    API server applies it to a list."""
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


class FakeConfigMaps:
    """The ConfigMap verbs of ftscale.controller.kube.Kube on an in-memory store, with the API
    server's semantics: POST of an existing name is a conflict, a merge PATCH adds/replaces the
    keys of `data` or `binaryData` and leaves the rest (metadata, owner included) alone, a list
    filters by label selector. `configmaps[(namespace, name)]` is the stored object."""

    def __init__(self):
        self.configmaps: dict[tuple[str, str], dict] = {}
        self._rv = 100

    def _stored(self, obj):
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        return obj

    def create_configmap(self, manifest):
        meta = manifest["metadata"]
        key = (meta["namespace"], meta["name"])
        if key in self.configmaps:
            raise Conflict(f"configmaps {meta['name']} already exists")
        obj = copy.deepcopy(manifest)
        obj["metadata"].setdefault("uid", f"uid-cm-{meta['name']}-{self._rv}")
        self.configmaps[key] = self._stored(obj)

    def patch_configmap(self, namespace, name, field, data):
        obj = self.configmaps.get((namespace, name))
        if obj is None:
            raise NotFound(f"configmaps {name} not found")
        obj.setdefault(field, {}).update(copy.deepcopy(dict(data)))
        self._stored(obj)

    def put_configmap_data(self, manifest, data, exists, field="data"):
        """Kube.put_configmap_data: POST when believed absent (a conflict falls back to the
        PATCH), PATCH when believed present (a 404 falls back to the POST)."""
        ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        if not exists:
            try:
                return self.create_configmap({**manifest, field: dict(data)})
            except Conflict:
                pass
        try:
            self.patch_configmap(ns, name, field, data)
        except NotFound:
            self.create_configmap({**manifest, field: dict(data)})

    def put_configmap_binary(self, manifest, data):
        self.put_configmap_data(manifest, data, False, field="binaryData")

    def list_configmaps(self, namespace, label_selector):
        return [copy.deepcopy(obj) for (ns, _), obj in sorted(self.configmaps.items())
                if ns == namespace
                and selector_matches(label_selector, obj["metadata"].get("labels") or {})]

    def get_configmap(self, namespace, name):
        obj = self.configmaps.get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None


def study_body(s, status=None, rv="5", uid=STUDY.uid, name=STUDY.name, namespace=STUDY.namespace):
    """A ScalingStudy as the API (or its watch) returns it."""
    return {"metadata": {"name": name, "namespace": namespace, "uid": uid, "generation": 1,
                         "resourceVersion": rv}, "spec": s, "status": status or {}}


class FakeKube(FakeConfigMaps):
    """The operator's API layer (ftscale.controller.kube.Kube) without a cluster: records every
    call in `calls`, keeps ConfigMaps (FakeConfigMaps) and the study (`study`, set by
    `add_study`); the status write is a merge patch with resourceVersion as precondition."""

    def __init__(self, status_conflict=False):
        super().__init__()
        self.calls: list[tuple] = []
        self.status_conflict = status_conflict
        self.study: dict | None = None
        self.rv = 10

    def create_job(self, manifest):
        self.calls.append(("create", manifest["metadata"]["name"]))
        return True

    def delete_job(self, ns, name):
        self.calls.append(("delete", name))

    def set_job_ttl(self, ns, name, ttl):
        self.calls.append(("ttl", name, ttl))

    def create_service(self, manifest):
        self.calls.append(("service", manifest["metadata"]["name"]))
        return True

    def delete_service(self, ns, name):
        self.calls.append(("delete-service", name))

    def put_configmap_data(self, manifest, data, exists, field="data"):
        self.calls.append(("configmap", tuple(sorted(data)), exists))
        super().put_configmap_data(manifest, data, exists, field)

    def put_configmap_binary(self, manifest, data):
        self.calls.append(("binary", manifest["metadata"]["name"], tuple(sorted(data))))
        super().put_configmap_data(manifest, data, False, field="binaryData")

    def list_configmaps(self, namespace, label_selector):
        self.calls.append(("list", label_selector))
        return super().list_configmaps(namespace, label_selector)

    def patch_study_status(self, ns, name, status, old, rv):
        self.calls.append(("status", rv, status.get("runsSucceeded")))
        if self.status_conflict:
            raise Conflict("stale")
        assert self.study is not None, "add_study first"
        if rv is not None and rv != self.study["metadata"]["resourceVersion"]:
            raise Conflict(f"resourceVersion {rv} is stale")
        updated = copy.deepcopy(self.study)
        for k, v in status.items():  # a merge patch: null removes the key
            if v is None:
                updated["status"].pop(k, None)
            else:
                updated["status"][k] = copy.deepcopy(v)
        self.rv = max(self.rv, int(self.study["metadata"]["resourceVersion"])) + 1  # etcd's: ever up
        updated["metadata"]["resourceVersion"] = str(self.rv)
        self.study = updated
        return copy.deepcopy(updated)

    def post_event(self, involved, type_, reason, message, now_text):
        self.calls.append(("event", reason))

    def made(self, kind):
        return [c for c in self.calls if c[0] == kind]


def add_study(reconciler, kube, body):
    """The study exists in the fake cluster and its watch event reaches the reconciler."""
    kube.study = copy.deepcopy(body)
    reconciler.observe_study("ADDED", copy.deepcopy(body))


def run_pass(reconciler, key=(STUDY.namespace, STUDY.name)):
    """One reconcile pass of the study and the background Job writes it started."""
    async def go():
        out = await reconciler.reconcile(key)
        await reconciler.drain()
        return out
    return asyncio.run(go())
