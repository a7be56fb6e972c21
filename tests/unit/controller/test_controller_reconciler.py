"""The reconciler's write order, with a recording fake of the API layer (no cluster):
results reach the results ConfigMap before any TTL can delete their Job; a failed results
write sets no TTL; a lagging cache never over-creates."""

from __future__ import annotations

from dataclasses import replace

from ftscale.api import results_store
from ftscale.controller.kube import Conflict
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.reconciler import Reconciler

from controller_testkit import (SETTINGS, FakeKube, add_study, run_pass, runs, spec, study_body,
                               succeeded)

KEY = ("ns", "demo")


def body(s, status=None, rv="5"):
    return study_body(s, status, rv)


def make(kube, jobs=(), pods=(), interval=0.0):
    settings = replace(SETTINGS, write_interval_seconds=interval)
    return Reconciler(settings, kube, OperatorMetrics(), lambda key: list(jobs), lambda key: list(pods))


def test_harvest_writes_configmap_and_status_then_ttl():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube()
    r = make(kube, [j], [p])
    add_study(r, kube, body(s))
    run_pass(r)
    kinds = [c[0] for c in kube.calls]
    # the ConfigMap and the status are written together; the TTL only after both
    assert max(kinds.index("configmap"), kinds.index("status")) < kinds.index("ttl")
    assert ("status", "5", 1) in kube.calls  # resourceVersion precondition, one run succeeded
    # the result is in the first results shard, and the written status is now the cache
    shard = kube.configmaps[("ns", results_store.shard_name("demo", 0))]
    assert list(shard["data"]) == [results_store.key(grid[0].run_id)]
    assert r.studies[KEY].recorded[grid[0].run_id].test_loss == 2.5
    assert r.studies[KEY].body["status"]["runsSucceeded"] == 1
    assert "results" not in r.studies[KEY].body["status"]


def test_status_conflict_sets_no_ttl():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube(status_conflict=True)
    r = make(kube, [j], [p])
    add_study(r, kube, body(s))
    try:
        run_pass(r)
    except Conflict:
        pass
    assert not any(c[0] == "ttl" for c in kube.calls)
    # the result was kept all the same: the next pass sets the TTL without harvesting again
    assert grid[0].run_id in r.studies[KEY].recorded
    kube.status_conflict = False
    kube.calls.clear()
    decided = run_pass(r)
    assert decided.new_results == {} and not kube.made("configmap")
    assert ("ttl", j.name, 0) in kube.calls


def test_created_jobs_are_expected_until_the_cache_shows_them():
    s = spec()
    kube = FakeKube()
    r = make(kube)
    add_study(r, kube, body(s))
    run_pass(r)
    created = [c for c in kube.calls if c[0] == "create"]
    assert len(created) == 3  # maxParallelRuns
    kube.calls.clear()
    run_pass(r)  # the cache still shows no Job
    assert not any(c[0] == "create" for c in kube.calls)


def test_an_older_watch_event_never_replaces_a_newer_own_write():
    s = spec()
    r = make(FakeKube())
    r.observe_study("ADDED", body(s, rv="20", status={"runsSucceeded": 1}))
    r.observe_study("MODIFIED", body(s, rv="19"))
    assert r.studies[KEY].body["metadata"]["resourceVersion"] == "20"


def test_status_writes_are_spaced_by_the_write_interval():
    s = spec()
    kube = FakeKube()
    r = make(kube, interval=30.0)
    add_study(r, kube, body(s))
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
    add_study(r, kube, body(s))
    run_pass(r)
    assert not any(c[0] == "ttl" for c in kube.calls)  # result not kept yet: Job must stay
    assert kube.configmaps == {} and grid[0].run_id in r.studies[KEY].pending
    kube.put_configmap_data = real
    kube.calls.clear()
    decided = run_pass(r)  # not harvested again: the ConfigMap gets it from memory, then TTL
    assert decided.new_results == {}
    assert ("configmap", (f"{grid[0].run_id}.json",), False) in kube.calls
    assert any(c[0] == "ttl" for c in kube.calls)
    assert r.studies[KEY].pending == {} and grid[0].run_id in r.studies[KEY].recorded


def test_a_ttl_patch_is_sent_once_while_the_cache_has_not_shown_it():
    """At scale the watch cache lags: the Job still shows no TTL on the next passes, and each
    would re-send the patch."""
    s = spec(ttlSecondsAfterFinished=60)
    grid = runs(s)
    j, p = succeeded(grid[0])
    kube = FakeKube()
    r = make(kube, [j], [p])  # the cached Job never shows its TTL
    add_study(r, kube, body(s))
    for _ in range(3):
        run_pass(r)
    assert [c for c in kube.calls if c[0] == "ttl"] == [("ttl", j.name, 60)]
    # ... also minutes later: a TTL once set is never sent again while the Job exists
    memory = r.studies[KEY]
    memory.ttl_done = {n: t - 3600 for n, t in memory.ttl_done.items()}
    run_pass(r)
    assert [c for c in kube.calls if c[0] == "ttl"] == [("ttl", j.name, 60)]
