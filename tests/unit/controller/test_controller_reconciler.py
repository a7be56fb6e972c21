"""The reconciler's write order, with a recording fake of the API layer (no cluster):
results reach the status before any TTL can delete their Job; a failed status write sets no
TTL; a lagging cache never over-creates."""

from __future__ import annotations

import asyncio
import copy
from dataclasses import replace

from ftscale.controller.kube import Conflict
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.reconciler import Reconciler

from controller_testkit import SETTINGS, runs, spec, succeeded

KEY = ("ns", "demo")


class FakeKube:
    def __init__(self, status_conflict=False):
        self.calls: list[tuple] = []
        self.status_conflict = status_conflict
        self.rv = 10

    def create_job(self, manifest):
        self.calls.append(("create", manifest["metadata"]["name"]))
        return True

    def delete_job(self, ns, name):
        self.calls.append(("delete", name))

    def set_job_ttl(self, ns, name, ttl):
        self.calls.append(("ttl", name, ttl))

    def put_configmap_data(self, manifest, data, exists):
        self.calls.append(("configmap", tuple(sorted(data)), exists))

    def patch_study_status(self, ns, name, status, old, rv):
        self.calls.append(("status", rv, len(status.get("results", []))))
        if self.status_conflict:
            raise Conflict("stale")
        self.rv += 1
        return {"metadata": {"name": name, "namespace": ns, "uid": "uid-1", "generation": 1,
                             "resourceVersion": str(self.rv)}, "spec": spec(ttlSecondsAfterFinished=0),
                "status": copy.deepcopy(status)}

    def post_event(self, involved, type_, reason, message, now_text):
        self.calls.append(("event", reason))


def run_pass(r):
    """One reconcile pass and the background Job writes it started."""
    async def go():
        out = await r.reconcile(KEY)
        await r.drain()
        return out
    return asyncio.run(go())


def body(s, status=None, rv="5"):
    return {"metadata": {"name": "demo", "namespace": "ns", "uid": "uid-1", "generation": 1,
                         "resourceVersion": rv}, "spec": s, "status": status or {}}


def make(kube, jobs=(), pods=(), interval=0.0):
    settings = replace(SETTINGS, write_interval_seconds=interval)
    return Reconciler(settings, kube, OperatorMetrics(), lambda key: list(jobs), lambda key: list(pods))


def test_harvest_writes_configmap_and_status_then_ttl():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube()
    r = make(kube, [j], [p])
    r.observe_study("ADDED", body(s))
    run_pass(r)
    kinds = [c[0] for c in kube.calls]
    # the ConfigMap and the status are written together; the TTL only after both
    assert max(kinds.index("configmap"), kinds.index("status")) < kinds.index("ttl")
    assert ("status", "5", 1) in kube.calls  # resourceVersion precondition, one result
    # the written status is now the cache: the next pass sees the result even if the Job is gone
    assert r.studies[KEY].body["status"]["results"][0]["runId"] == grid[0].run_id


def test_status_conflict_sets_no_ttl():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube(status_conflict=True)
    r = make(kube, [j], [p])
    r.observe_study("ADDED", body(s))
    try:
        run_pass(r)
    except Conflict:
        pass
    assert not any(c[0] == "ttl" for c in kube.calls)


def test_created_jobs_are_expected_until_the_cache_shows_them():
    s = spec()
    kube = FakeKube()
    r = make(kube)
    r.observe_study("ADDED", body(s))
    run_pass(r)
    created = [c for c in kube.calls if c[0] == "create"]
    assert len(created) == 3  # maxParallelRuns
    kube.calls.clear()
    run_pass(r)  # the cache still shows no Job
    assert not any(c[0] == "create" for c in kube.calls)


def test_an_older_watch_event_never_replaces_a_newer_own_write():
    s = spec()
    r = make(FakeKube())
    r.observe_study("ADDED", body(s, rv="20", status={"results": [{"runId": "x", "phase": "Succeeded"}]}))
    r.observe_study("MODIFIED", body(s, rv="19"))
    assert r.studies[KEY].body["metadata"]["resourceVersion"] == "20"


def test_status_writes_are_spaced_by_the_write_interval():
    s = spec()
    kube = FakeKube()
    r = make(kube, interval=30.0)
    r.observe_study("ADDED", body(s))
    run_pass(r)
    assert [c[0] for c in kube.calls].count("status") == 1
    kube.calls.clear()
    assert run_pass(r) is None  # deferred, not dropped: requeued
    assert kube.calls == [] and KEY in r._due


def test_a_failed_configmap_write_holds_the_ttl_and_is_retried():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube()
    real = kube.put_configmap_data
    kube.put_configmap_data = lambda *a: (_ for _ in ()).throw(RuntimeError("etcd hiccup"))
    r = make(kube, [j], [p])
    r.observe_study("ADDED", body(s))
    run_pass(r)
    assert not any(c[0] == "ttl" for c in kube.calls)  # full result not kept yet: Job must stay
    kube.put_configmap_data = real
    kube.calls.clear()
    run_pass(r)  # the status already has the run; the ConfigMap gets it from memory, then TTL
    assert ("configmap", (f"{grid[0].run_id}.json",), False) in kube.calls
    assert any(c[0] == "ttl" for c in kube.calls)
