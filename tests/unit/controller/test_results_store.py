"""The results ConfigMaps (ftscale.api.results_store) and the fit input's encoding
(ftscale.api.fit_input): shard assignment, reading back (owner, names, bad entries), and the
reconciler over a fake cluster whose ConfigMaps outlive the operator — a restart, a grid
shrunk and grown again, a study re-created under the same name, results over many shards,
leadership lost and regained."""

from __future__ import annotations

import base64
import copy
import gzip
import json
from dataclasses import replace

import pytest

from ftscale import results as rc
from ftscale.api import fit_input, results_store
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.reconciler import Reconciler
from ftscale.controller.templates import StudyRef, results_configmap

from controller_testkit import (SETTINGS, STUDY, FakeKube, add_study, job, pod, result, run_pass,
                                runs, spec, study_body, trainer_message)

KEY = (STUDY.namespace, STUDY.name)
HOSTILE = '<script>alert("x")</script>'


# ---- assign: which shard a result goes to ----------------------------------------------------
def entry(i: int, size: int) -> tuple[str, str]:
    """A `key → value` of exactly `size` bytes."""
    k = f"r{i:03d}.json"
    return k, "x" * (size - len(k))


def test_assign_fills_the_open_shard_then_rolls_over_at_max_bytes():
    pending = dict(entry(i, 30) for i in range(5))
    keys = list(pending)
    # shard 0 holds 60 bytes: one more entry fits (90 <= 100), the next opens shard 1
    got = results_store.assign(pending, {0: 60}, max_bytes=100)
    assert {i: list(d) for i, d in got.items()} == {0: keys[:1], 1: keys[1:4], 2: keys[4:]}
    assert got[1] == {k: pending[k] for k in keys[1:4]}  # values travel unchanged
    # the open shard is the highest; lower ones are never written again
    assert list(results_store.assign(pending, {0: 10, 3: 0}, max_bytes=100)) == [3, 4]
    # a fresh study starts at shard 0; an exact fit does not roll over
    assert list(results_store.assign(dict([entry(0, 100)]), {}, max_bytes=100)) == [0]
    # an entry bigger than a shard still goes somewhere: into an empty shard of its own
    big = dict([entry(0, 30), entry(1, 150), entry(2, 30)])
    assert [list(d) for d in results_store.assign(big, {}, max_bytes=100).values()] == \
        [[list(big)[0]], [list(big)[1]], [list(big)[2]]]
    assert results_store.assign({}, {0: 10}, max_bytes=100) == {}


def test_assign_never_writes_a_shard_name_another_owner_holds():
    pending = dict(entry(i, 30) for i in range(2))
    assert list(results_store.assign(pending, {}, max_bytes=100, taken={0, 1})) == [2]
    # ours is open above a namesake's: keep filling ours
    assert list(results_store.assign(pending, {2: 10}, max_bytes=100, taken={0, 1})) == [2]
    # a namesake's shard above ours: open the next free one
    assert list(results_store.assign(pending, {0: 10}, max_bytes=100, taken={1})) == [2]


def test_assign_default_is_the_module_limit_at_the_call(monkeypatch):
    pending = dict(entry(i, 30) for i in range(4))
    assert list(results_store.assign(pending, {})) == [0]
    monkeypatch.setattr(results_store, "SHARD_MAX_BYTES", 60)
    assert list(results_store.assign(pending, {})) == [0, 1]


# ---- read_results ------------------------------------------------------------------------------
def shard(index, data, uid=STUDY.uid, study=STUDY.name):
    ref = StudyRef(name=study, namespace=STUDY.namespace, uid=uid, generation=1)
    return {**results_configmap(ref, index), "data": dict(data)}


def renamed(cm, name):
    return {**cm, "metadata": {**cm["metadata"], "name": name}}


def encoded(*results):
    return {results_store.key(r.run_id): results_store.encode(r) for r in results}


def test_read_results_takes_only_the_studys_own_shards_and_says_what_it_skips():
    grid = runs()
    ours = [result(grid[i], loss=2.0 + i) for i in range(3)]
    theirs = result(grid[3], loss=9.0)
    other_study = replace(result(grid[4]), study="someone-else")
    configmaps = [
        shard(0, encoded(ours[0], ours[1])),
        shard(1, {**encoded(ours[2]),
                  "junk.json": "{not json",
                  results_store.key(grid[5].run_id): results_store.encode(result(grid[6])),
                  results_store.key(other_study.run_id): results_store.encode(other_study),
                  "README": "not a result key: ignored without a note"}),
        shard(2, encoded(theirs), uid="uid-of-a-deleted-namesake"),  # the namesake's
        renamed(shard(3, encoded(theirs)), "demo-fit-input"),
        shard(0, encoded(theirs), study="demo2"),  # another study (its name starts alike)
        renamed(shard(4, encoded(theirs)), "demo-results-4-old"),
        renamed(shard(5, encoded(theirs)), "demo-results-"),
    ]
    got = results_store.read_results(STUDY.name, STUDY.uid, configmaps)
    assert got.results == {r.run_id: r for r in ours}
    assert set(got.sizes) == {0, 1} and got.foreign == {2}
    assert got.sizes[0] == results_store.data_bytes(configmaps[0]["data"])
    assert len(got.notes) == 3
    assert any("demo-results-1[junk.json] is not a run result" in n for n in got.notes)
    assert any(f"holds run {grid[6].run_id} of study demo" in n for n in got.notes)
    assert any("of study someone-else" in n for n in got.notes)
    # without a UID (a reader that has none) every owner's shards count
    anyone = results_store.read_results(STUDY.name, None, configmaps)
    assert set(anyone.results) == {r.run_id for r in ours} | {theirs.run_id}
    assert anyone.foreign == set()


def test_a_result_round_trips_through_its_configmap_value():
    grid = runs()
    full = result(grid[2], generation={"bleu": 12.5}, zero_shot={"loss": 3.25}, steps=400,
                  tokens_seen=123456, device="cuda:TEST GPU x1", gpu_seconds=25.0)
    failed = result(grid[1], outcome=rc.FAILED, reason=rc.RUNTIME_ERROR, test_loss=None,
                    best_dev_loss=None, message=f"boom: {HOSTILE} ✓")
    values = encoded(full, failed)
    for value in values.values():
        doc = json.loads(value)
        assert None not in doc.values() or doc.get("pet_size") is None  # only identity stays
        assert "test_ppl" not in doc and "curves" not in doc
    got = results_store.read_results(STUDY.name, STUDY.uid, [shard(0, values)])
    assert got.notes == [] and got.results == {full.run_id: rc.parse_result(full.to_compact_json()),
                                               failed.run_id: rc.parse_result(failed.to_compact_json())}
    assert got.results[full.run_id].generation == {"bleu": 12.5}
    assert got.results[failed.run_id].message == failed.message
    assert results_store.encode(got.results[full.run_id]) == values[results_store.key(full.run_id)]


# ---- the fit input's encoding -------------------------------------------------------------------
def test_the_fit_input_is_deterministic_gzip_and_reads_back_gzipped_or_plain():
    doc = {"study": "demo", "results": [{"run_id": "a", "test_loss": 2.5}], "law": {"seed": 0}}
    same = json.loads(json.dumps(doc))
    same = dict(reversed(list(same.items())))  # another key order
    data = fit_input.encode(doc)
    assert data[:2] == fit_input.GZIP_MAGIC and data == fit_input.encode(same)
    assert gzip.decompress(data) == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert fit_input.decode(data) == doc
    assert fit_input.decode_b64(fit_input.encode_b64(doc)) == doc
    assert base64.b64decode(fit_input.encode_b64(doc)) == data
    assert fit_input.decode(json.dumps(doc).encode()) == doc  # a hand-written plain input
    with pytest.raises(ValueError, match="corrupt gzip"):
        fit_input.decode(data[:12])
    with pytest.raises(ValueError):
        fit_input.decode(b"neither gzip nor JSON")
    with pytest.raises(ValueError):  # what JSON cannot say is refused, not written
        fit_input.encode({"x": float("nan")})
    # ten thousand runs' results compress well below a ConfigMap's 1 MiB
    many = {"results": [json.loads(results_store.encode(result(r, loss=2.0 + i / 7)))
                        for i, r in enumerate(runs() * 1250)]}
    assert len(json.dumps(many)) > 1024 * 1024 > 4 * len(fit_input.encode_b64(many))


# ---- the reconciler over a fake cluster ----------------------------------------------------------
class World:
    """A fake cluster: the API (FakeKube: ConfigMaps and the study persist) and the Jobs and
    pods the watch caches show. Reconcilers come and go (restarts); the world stays."""

    def __init__(self):
        self.kube = FakeKube()
        self.jobs: list = []
        self.pods: list = []

    def operator(self) -> Reconciler:
        settings = replace(SETTINGS, write_interval_seconds=0.0)
        return Reconciler(settings, self.kube, OperatorMetrics(), lambda key: list(self.jobs),
                          lambda key: list(self.pods))

    def finish(self, rs, owner_uid=STUDY.uid, loss=2.5):
        """These runs' Jobs completed, their pods carrying the trainer's result."""
        for r in rs:
            j = job(r, finished="Complete", owner_uid=owner_uid)
            self.jobs.append(j)
            self.pods.append(pod(j.name, r, message=trainer_message(result(r, loss))))

    def expire(self):
        """The TTL controller deleted every finished Job (and its pods)."""
        self.jobs, self.pods = [], []

    def shards(self, uid=STUDY.uid):
        return {name: cm for (_, name), cm in sorted(self.kube.configmaps.items())
                if results_store.shard_index(STUDY.name, name) is not None
                and any(o["uid"] == uid for o in cm["metadata"]["ownerReferences"])}


def change_spec(r, kube, s):
    """`kubectl apply` of a new spec: the API server bumps generation and resourceVersion."""
    body = copy.deepcopy(kube.study)
    body["spec"] = s
    body["metadata"]["generation"] += 1
    kube.rv += 1
    body["metadata"]["resourceVersion"] = str(kube.rv)
    kube.study = body
    r.observe_study("MODIFIED", copy.deepcopy(body))


def created(kube) -> set[str]:
    return {c[1] for c in kube.made("create")}


def test_a_restarted_operator_reads_the_results_back_and_never_reruns_a_recorded_run():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    world = World()
    world.finish(grid[:3])
    first = world.operator()
    add_study(first, world.kube, study_body(s))
    decided = run_pass(first)
    assert set(decided.new_results) == {r.run_id for r in grid[:3]}
    assert list(world.shards()) == ["demo-results-0"]
    # the TTL controller deletes the Jobs; the operator restarts (a new process: no memory)
    world.expire()
    world.kube.calls.clear()
    second = world.operator()
    second.observe_study("ADDED", copy.deepcopy(world.kube.study))
    again = run_pass(second)
    assert world.kube.made("list") == [("list", results_store.label_selector(STUDY.name))]
    assert set(second.studies[KEY].recorded) == {r.run_id for r in grid[:3]}
    assert again.new_results == {} and again.status["runsSucceeded"] == 3
    assert [r.run_id for r in again.results] == [r.run_id for r in grid[:3]]
    # maxParallelRuns (3) new Jobs, none of them for a recorded run
    assert created(world.kube) == {r.job_name for r in grid[3:6]}
    # read once per study: the next pass lists nothing
    world.kube.calls.clear()
    run_pass(second)
    assert world.kube.made("list") == []


def test_a_grid_shrunk_and_grown_again_reuses_the_recorded_results():
    s = spec(ttlSecondsAfterFinished=0, maxParallelRuns=8)
    grid = runs(s)
    bigger_runs = [r for r in grid if r.key.data_size == 200]
    world = World()
    world.finish(bigger_runs)
    r = world.operator()
    add_study(r, world.kube, study_body(s))
    run_pass(r)
    world.expire()
    smaller = copy.deepcopy(s)
    smaller["dataSizes"] = [100]
    change_spec(r, world.kube, smaller)
    shrunk = run_pass(r)
    assert shrunk.status["runsTotal"] == 4 and shrunk.status["runsSucceeded"] == 0
    assert created(world.kube) == {x.job_name for x in grid if x.key.data_size == 100}
    # grown again, by an operator that restarted meanwhile: the ConfigMaps remember the runs
    world.kube.calls.clear()
    restarted = world.operator()
    restarted.observe_study("ADDED", copy.deepcopy(world.kube.study))
    change_spec(restarted, world.kube, s)
    regrown = run_pass(restarted)
    assert regrown.status["runsTotal"] == 8 and regrown.status["runsSucceeded"] == 4
    assert regrown.new_results == {} and {x.run_id for x in regrown.results} == \
        {x.run_id for x in bigger_runs}
    assert not created(world.kube) & {x.job_name for x in bigger_runs}


def test_a_study_recreated_under_the_same_name_starts_afresh_and_keeps_its_own_results():
    s = spec(ttlSecondsAfterFinished=0, maxParallelRuns=8)
    grid = runs(s)
    world = World()
    world.finish(grid[:3])
    r = world.operator()
    add_study(r, world.kube, study_body(s))
    run_pass(r)
    old_shard = copy.deepcopy(world.shards()["demo-results-0"])
    # deleted and created again at once: the garbage collector has not yet removed the old
    # study's shard nor its Jobs; the watch shows the new study (another UID)
    world.kube.calls.clear()
    new_uid = "uid-2"
    add_study(r, world.kube, study_body(s, uid=new_uid, rv="50"))
    fresh = run_pass(r)
    assert r.studies[KEY].recorded == {} and fresh.results == [] and fresh.new_results == {}
    assert fresh.status["runsSucceeded"] == 0
    assert {x.job_name for x in grid[:3]} <= created(world.kube)  # the old results do not count
    # the new study's first result goes to a shard of its own, not into the namesake's
    world.expire()
    world.finish(grid[:1], owner_uid=new_uid, loss=1.25)
    run_pass(r)
    assert world.kube.configmaps[("ns", "demo-results-0")] == old_shard
    mine = world.shards(new_uid)
    assert list(mine) == ["demo-results-1"]
    assert list(mine["demo-results-1"]["data"]) == [results_store.key(grid[0].run_id)]
    # the garbage collector removes the old shard; a restarted operator finds the new result
    del world.kube.configmaps[("ns", "demo-results-0")]
    world.expire()
    restarted = world.operator()
    restarted.observe_study("ADDED", copy.deepcopy(world.kube.study))
    after = run_pass(restarted)
    assert {x.run_id: x.test_loss for x in after.results} == {grid[0].run_id: 1.25}


def test_results_spread_over_many_small_shards_are_all_read_back(monkeypatch):
    # room for two results a shard (~330 bytes each)
    monkeypatch.setattr(results_store, "SHARD_MAX_BYTES", 800)
    s = spec(ttlSecondsAfterFinished=0, maxParallelRuns=8)
    grid = runs(s)
    world = World()
    r = world.operator()
    add_study(r, world.kube, study_body(s))
    for batch in (grid[:5], grid[5:]):  # two harvest passes
        world.expire()
        world.finish(batch)
        world.kube.calls.clear()
        decided = run_pass(r)
        assert set(decided.new_results) == {x.run_id for x in batch}
        # one merge per shard touched: the open one, and new ones as it fills
        writes = world.kube.made("configmap")
        assert sum(len(keys) for _, keys, _ in writes) == len(batch)
        assert [exists for _, _, exists in writes][1:] == [False] * (len(writes) - 1)
    shards = world.shards()
    assert len(shards) >= 4
    entry = max(len(k) + len(v) for cm in shards.values() for k, v in cm["data"].items())
    for cm in shards.values():
        assert results_store.data_bytes(cm["data"]) <= 800 + entry
    keys = [k for cm in shards.values() for k in cm["data"]]
    assert sorted(keys) == sorted(results_store.key(x.run_id) for x in grid)  # each once
    world.expire()
    world.kube.calls.clear()
    restarted = world.operator()
    restarted.observe_study("ADDED", copy.deepcopy(world.kube.study))
    after = run_pass(restarted)
    assert {x.run_id for x in after.results} == {x.run_id for x in grid}
    assert after.status["runsSucceeded"] == 8 and after.new_results == {}
    assert restarted.studies[KEY].shard_sizes == r.studies[KEY].shard_sizes
    # every run is terminal: only the fit Job (again: AlreadyExists is success), whose input
    # holds all eight results from all the shards
    assert created(world.kube) == {after.fit_job["metadata"]["name"]}
    stored = world.kube.configmaps[("ns", "demo-fit-input")]["binaryData"]
    doc = fit_input.decode_b64(stored[fit_input.FILE])
    assert sorted(x["run_id"] for x in doc["results"]) == sorted(x.run_id for x in grid)
    assert doc == after.fit_input


def test_a_replica_that_leads_again_reads_what_the_other_leader_recorded():
    s = spec(ttlSecondsAfterFinished=0)
    grid = runs(s)
    world = World()
    a = world.operator()
    add_study(a, world.kube, study_body(s))
    run_pass(a)  # leads: creates the first Jobs, has read the (empty) results
    # a loses the lease; b leads, harvests three runs, their Jobs expire
    b = world.operator()
    b.observe_study("ADDED", copy.deepcopy(world.kube.study))
    world.finish(grid[:3])
    assert set(run_pass(b).new_results) == {x.run_id for x in grid[:3]}
    world.expire()
    # a leads again, minutes later (its expectations of created Jobs have lapsed); its watch
    # delivered the newest study meanwhile
    a.observe_study("MODIFIED", copy.deepcopy(world.kube.study))
    a.studies[KEY].expected.clear()
    a.leadership_gained()
    world.kube.calls.clear()
    decided = run_pass(a)
    assert world.kube.made("list")  # read again, not trusted from before
    assert decided.status["runsSucceeded"] == 3
    assert not created(world.kube) & {x.job_name for x in grid[:3]}


def test_the_fit_input_of_a_recreated_study_adopts_its_deleted_namesakes_configmap():
    """A study deleted and re-created before the garbage collector removed `<study>-fit-input`:
    the operator's write takes the ConfigMap over (ownerReferences → the new study), so the GC
    does not delete the new fit's input."""
    from ftscale.api import fit_input
    from ftscale.controller.kube import Kube
    from ftscale.controller.templates import StudyRef, fit_input_configmap

    class Recording(Kube):
        def __init__(self):
            super().__init__(api=None)
            self.calls = []

        def request(self, method, path, body=None, *args, **kwargs):
            self.calls.append((method, path, body))
            if method == "POST":
                from ftscale.controller.kube import Conflict
                raise Conflict("exists")  # the namesake's ConfigMap is still there
            return {}

    kube = Recording()
    new = StudyRef(name="demo", namespace="ns", uid="uid-new", generation=1)
    kube.put_configmap_binary(fit_input_configmap(new), {"fit-input.json.gz": fit_input.encode_b64({"a": 1})})
    method, _, body = kube.calls[-1]
    assert method == "PATCH"
    assert [o["uid"] for o in body["metadata"]["ownerReferences"]] == ["uid-new"]
