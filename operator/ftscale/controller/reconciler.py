"""The reconcile loop: a work queue of studies, debounced, with level-based passes.

Triggers (kopf watch events of studies, their Jobs and pods, the periodic resync, leadership
gained) only *enqueue* a study; a pass then reads the caches (no API reads), calls the pure
`plan`, and carries it out in this order, which is what makes restarts safe:

1. delete Jobs of runs dropped from the grid;
2. add newly harvested results to the results ConfigMaps (ftscale.api.results_store: one merge
   patch of the open shard per pass) and write the status (counts, fit, conditions — small,
   whatever the study's size; resourceVersion as precondition), together;
3. only once the results are durable: set ttlSecondsAfterFinished on harvested Jobs (a Job can
   vanish only once its result is kept), delete the Services of harvested multi-node runs, and
   create missing run Jobs (AlreadyExists = done), a multi-node run's Service before its Job;
4. fit input + fit Job when every run is terminal; Events; metrics.

A crash between any two steps leaves a state the next pass (on any replica) completes: the
Jobs and the results ConfigMaps are the whole truth (read back when a study is first seen),
and every write is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ftscale.api import fit_input, results_store
from ftscale.controller import names
from ftscale.controller import policy
from ftscale.controller.desired import StudyRejected, desired_runs
from ftscale.controller.kube import Conflict, Kube
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.observe import JobView, PodView, format_time
from ftscale.controller.plan import Plan, plan
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import JOB_NAME_LABEL, StudyRef, fit_input_configmap, results_configmap
from ftscale.results import RunResult

log = logging.getLogger("ftscale.operator.reconciler")

Key = tuple[str, str]  # (namespace, study name)

# A created Job the cache has not shown after this long is forgotten (the create succeeded or
# AlreadyExists'ed, so the watch will show it; this only bounds memory if it never does).
EXPECTATION_TTL = 120.0
# Requeue delay while waiting for something the cache will show soon (a pod's result).
SHORT_REQUEUE = 1.0
# Requeue delay after an error (API hiccup, conflict).
ERROR_REQUEUE = 2.0
# A Job create the API server refuses (4xx: an invalid label, a quota, a webhook) is tried
# again after REFUSED_BACKOFF seconds, doubling per refusal up to REFUSED_BACKOFF_MAX.
REFUSED_BACKOFF = 5.0
REFUSED_BACKOFF_MAX = 300.0
# Count-only status changes (a pod started, a run harvested: its result is already durable in
# the results ConfigMaps) are written at most this often; condition changes and a finished fit
# are written at once.
STATUS_MIN_INTERVAL = 5.0


def _rv(body: dict[str, Any] | None) -> int:
    try:
        return int(((body or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class StudyMemory:
    """What the reconciler remembers per study between passes: caches, never truth."""

    body: dict[str, Any] | None = None  # newest ScalingStudy seen (watch or our own write)
    desired_for: tuple | None = None  # (uid, generation) the desired runs were expanded for
    desired: list | None = None
    desired_error: str | None = None
    expected: dict[str, float] = field(default_factory=dict)  # created Job name → monotonic time
    ttl_inflight: set[str] = field(default_factory=set)  # Jobs whose TTL patch is under way
    # Jobs whose TTL patch succeeded → when: never patched again while they exist, whether or
    # not the watch cache shows the TTL yet (on a busy API server it can lag by seconds).
    ttl_done: dict[str, float] = field(default_factory=dict)
    # The study's recorded results (read back from its results ConfigMaps when first seen, then
    # kept up to date by our own writes), for the study UID in `recorded_for`.
    recorded: dict[str, RunResult] | None = None
    recorded_for: str | None = None
    shard_sizes: dict[int, int] = field(default_factory=dict)  # results shard → bytes written
    foreign_shards: set[int] = field(default_factory=set)  # shard names a namesake still holds
    pending: dict[str, RunResult] = field(default_factory=dict)  # harvested, not yet written
    # Job name → (refusals, monotonic time of the next try, the API server's message)
    refused: dict[str, tuple[int, float, str]] = field(default_factory=dict)
    # status.recentFailures as last decided (written or not: a throttled status write must not
    # lose the failures its pass harvested).
    recent_failures: list | None = None
    last_status_write: float = 0.0


class Reconciler:
    def __init__(self, settings: OperatorSettings, kube: Kube, metrics: OperatorMetrics,
                 jobs_of: Callable[[Key], Iterable[JobView]], pods_of: Callable[[Key], Iterable[PodView]],
                 is_leader: Callable[[], bool] = lambda: True):
        self.settings = settings
        self.kube = kube
        self.metrics = metrics
        self.jobs_of = jobs_of
        self.pods_of = pods_of
        self.is_leader = is_leader
        self.studies: dict[Key, StudyMemory] = {}
        self._due: dict[Key, float] = {}
        self._busy: set[Key] = set()
        self._again: set[Key] = set()
        self._wake: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=settings.api_threads, thread_name_prefix="ftscale-api")
        # A lane of its own for the harvest path (results ConfigMap, status): a harvest never
        # queues behind 300 Job creations.
        self._status_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ftscale-status")
        self._background: set[asyncio.Task] = set()
        self.passes = 0

    # ---- inputs from the watches ----
    def observe_study(self, event_type: str, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if event_type == "DELETED":
            self.studies.pop(key, None)
            self._due.pop(key, None)
            self.metrics.forget_study(*key)
            return
        memory = self.studies.setdefault(key, StudyMemory())
        if memory.body is None or _rv(body) >= _rv(memory.body) or \
                (memory.body.get("metadata") or {}).get("uid") != meta.get("uid"):
            memory.body = body
        self.enqueue(key)

    def enqueue(self, key: Key, delay: float | None = None) -> None:
        delay = self.settings.batch_seconds if delay is None else delay
        due = time.monotonic() + delay
        if key in self._busy:
            self._again.add(key)
        if key not in self._due or self._due[key] > due:
            self._due[key] = due
        if self._wake is not None:
            self._wake.set()

    def enqueue_all(self) -> None:
        for key in list(self.studies):
            self.enqueue(key, 0.0)

    def leadership_gained(self) -> None:
        """This replica leads (again): what it remembers of the studies' results may be stale
        — another leader recorded results (and let their Jobs go) meanwhile — so each study's
        results ConfigMaps are read again on its next pass. Then every study is reconciled."""
        for memory in self.studies.values():
            memory.recorded_for = None
        self.enqueue_all()

    # ---- the loop ----
    async def run(self) -> None:
        self._wake = asyncio.Event()
        workers = [asyncio.create_task(self._worker(i), name=f"ftscale-reconcile-{i}")
                   for i in range(self.settings.workers)]
        try:
            while True:
                await asyncio.sleep(self.settings.resync_seconds)
                self.enqueue_all()
        finally:
            for w in workers:
                w.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _next(self) -> tuple[Key | None, float]:
        now = time.monotonic()
        best, best_due = None, float("inf")
        for key, due in self._due.items():
            if key in self._busy:
                continue
            if due < best_due:
                best, best_due = key, due
        if best is not None and best_due <= now:
            del self._due[best]
            return best, 0.0
        return None, (best_due - now if best is not None else 3600.0)

    async def _worker(self, index: int) -> None:
        assert self._wake is not None
        while True:
            key, wait = self._next()
            if key is None:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(wait, 60.0))
                except asyncio.TimeoutError:
                    pass
                continue
            self._busy.add(key)
            try:
                if self.is_leader():
                    await self.reconcile(key)
            except Exception as exc:  # noqa: BLE001 - one study's failure never stops the loop
                self.metrics.observe_error(exc)
                level = logging.INFO if isinstance(exc, Conflict) else logging.ERROR
                log.log(level, "reconcile %s/%s failed: %s", key[0], key[1], exc,
                        exc_info=level == logging.ERROR)
                self.enqueue(key, ERROR_REQUEUE)
            finally:
                self._busy.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.enqueue(key)

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _call_status(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._status_pool, fn, *args)

    async def drain(self) -> None:
        """Wait for the background Job writes of earlier passes (tests; orderly shutdown)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read_results(self, ref: StudyRef, memory: StudyMemory) -> None:
        """Read the study's results ConfigMaps back (first pass for this study UID: after a
        restart, a leadership change, or a study re-created under the same name)."""
        items = await self._call_status(self.kube.list_configmaps, ref.namespace,
                                        results_store.label_selector(ref.name))
        got = results_store.read_results(ref.name, ref.uid, items)
        for note in got.notes:
            log.warning("study %s/%s: %s", ref.namespace, ref.name, note)
        memory.recorded, memory.shard_sizes = got.results, got.sizes
        memory.foreign_shards = got.foreign
        memory.recorded_for = ref.uid
        memory.pending.clear()
        memory.recent_failures = None
        if got.results:
            log.info("study %s/%s: read back %d recorded results from %d ConfigMaps", ref.namespace,
                     ref.name, len(got.results), len(got.sizes))

    async def _write_results(self, ref: StudyRef, memory: StudyMemory) -> None:
        """Merge the pending results into the open shard (the next one when it is full).
        Each shard written is recorded at once, so a failure retries only what is left."""
        encoded = {results_store.key(rid): results_store.encode(r) for rid, r in memory.pending.items()}
        assigned = results_store.assign(encoded, memory.shard_sizes, taken=memory.foreign_shards)
        for index, data in sorted(assigned.items()):
            await self._call_status(self.kube.put_configmap_data, results_configmap(ref, index), data,
                                    index in memory.shard_sizes)
            memory.shard_sizes[index] = memory.shard_sizes.get(index, 0) + results_store.data_bytes(data)
            for k in data:
                rid = k[: -len(results_store.KEY_SUFFIX)]
                assert memory.recorded is not None
                memory.recorded[rid] = memory.pending.pop(rid)

    async def _apply_jobs(self, key: Key, memory: StudyMemory, ns: str, ttls: list[tuple[str, int]],
                          creates: list[dict[str, Any]], services: list[dict[str, Any]] = (),
                          service_deletes: list[str] = ()) -> None:
        """TTL patches, rendezvous Services and Job creations of one pass (idempotent; a failure
        requeues the study). A multi-node run's Service is created before its Job, and a Job
        whose Service could not be created is not created (the next pass plans both again)."""
        async def ttl(name: str, seconds: int) -> None:
            try:
                await self._call(self.kube.set_job_ttl, ns, name, seconds)
            finally:
                memory.ttl_inflight.discard(name)
            memory.ttl_done[name] = time.monotonic()

        made = await asyncio.gather(*(self._call(self.kube.create_service, m) for m in services),
                                    return_exceptions=True)
        errors = [r for r in made if isinstance(r, BaseException)]
        without_service = {m["spec"]["selector"][JOB_NAME_LABEL]
                           for m, r in zip(services, made) if isinstance(r, BaseException)}
        for name in without_service:
            memory.expected.pop(name, None)  # not created: plan it again
        creates = [m for m in creates if m["metadata"]["name"] not in without_service]
        results = await asyncio.gather(*(ttl(n, t) for n, t in ttls),
                                       *(self._call(self.kube.create_job, m) for m in creates),
                                       *(self._call(self.kube.delete_service, ns, n)
                                         for n in service_deletes),
                                       return_exceptions=True)
        errors += [r for r in results if isinstance(r, BaseException)]
        for m, r in zip(creates, results[len(ttls):]):
            name = m["metadata"]["name"]
            if not isinstance(r, BaseException):
                memory.refused.pop(name, None)
            elif _refusal(r):
                # Refused, not failed: the same manifest will be refused again, so back off and
                # say so on the study (the Stalled condition, a JobCreateRefused Event).
                count = memory.refused.get(name, (0, 0.0, ""))[0] + 1
                delay = min(REFUSED_BACKOFF_MAX, REFUSED_BACKOFF * 2 ** (count - 1))
                memory.refused[name] = (count, time.monotonic() + delay, _refusal(r))
                self.enqueue(key, delay)
        if errors:
            for m, r in zip(creates, results[len(ttls):]):
                if isinstance(r, BaseException):
                    memory.expected.pop(m["metadata"]["name"], None)  # not created: plan it again
            self.metrics.observe_error(errors[0])
            log.warning("study %s/%s: %d of %d Job/Service writes failed (%s); retrying", key[0],
                        key[1], len(errors), len(results) + len(made), errors[0])
            self.enqueue(key, ERROR_REQUEUE)

    # ---- one pass ----
    def _desired(self, memory: StudyMemory, name: str, spec: dict[str, Any], uid: str, generation: int | None):
        if memory.desired_for != (uid, generation):
            try:
                refused = policy.violations(
                    spec, allowed_images=self.settings.allowed_images,
                    allowed_service_accounts=self.settings.allowed_service_accounts,
                    default_image=self.settings.trainer_image)
                if refused:
                    raise StudyRejected("; ".join(refused))
                memory.desired = desired_runs(name, spec)
                memory.desired_error = None
            except StudyRejected as exc:
                memory.desired = None
                memory.desired_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - any expansion failure is a spec problem
                memory.desired = None
                memory.desired_error = f"cannot expand the grid: {type(exc).__name__}: {exc}"
            memory.desired_for = (uid, generation)
        return memory.desired, memory.desired_error

    async def reconcile(self, key: Key) -> Plan | None:
        memory = self.studies.get(key)
        if memory is None or memory.body is None:
            return None
        wait = memory.last_status_write + self.settings.write_interval_seconds - time.monotonic()
        if wait > 0:
            # Too soon after the last status write: gather what happens meanwhile into one pass.
            self.enqueue(key, wait)
            return None
        started = time.perf_counter()
        body = memory.body
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        ref = StudyRef(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""),
                       generation=meta.get("generation"))
        if memory.desired_for == (ref.uid, ref.generation):
            desired, error = memory.desired, memory.desired_error
        else:  # a new generation: expanding 1,000 runs takes a moment; not on the event loop
            desired, error = await self._call_status(self._desired, memory, ref.name, spec, ref.uid,
                                                     ref.generation)
        if memory.recorded is None or memory.recorded_for != ref.uid:
            await self._read_results(ref, memory)
        assert memory.recorded is not None
        jobs = list(self.jobs_of(key))
        pods = list(self.pods_of(key))
        mono = time.monotonic()
        seen = {j.name for j in jobs}
        memory.expected = {n: t for n, t in memory.expected.items()
                           if n not in seen and mono - t < EXPECTATION_TTL}
        memory.refused = {n: v for n, v in memory.refused.items() if n not in seen}
        # A TTL once set stays: never patch it again while the Job exists (a lagging watch cache
        # may still show it without its TTL).
        memory.ttl_done = {n: t for n, t in memory.ttl_done.items() if n in seen or mono - t < EXPECTATION_TTL}
        now = time.time()
        decided = plan(ref, spec, body.get("status"), desired, jobs, pods, now, self.settings,
                       recorded={**memory.recorded, **memory.pending},
                       recent_failures=memory.recent_failures,
                       pending_creates=set(memory.expected),
                       refused={n: why for n, (_, _, why) in memory.refused.items()},
                       backoff={n for n, (_, at, _) in memory.refused.items() if at > mono},
                       spec_error=error,
                       deleting=bool(meta.get("deletionTimestamp")))
        self.passes += 1
        ns = ref.namespace

        steps: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            now_ = time.perf_counter()
            steps[name] = now_ - clock
            clock = now_

        # 1. Jobs of runs dropped from the grid
        if decided.delete_jobs:
            await asyncio.gather(*(self._call(self.kube.delete_job, ns, n) for n in decided.delete_jobs))
            lap("delete")

        # 2. the results ConfigMaps and the status, together (a harvest waits for the slower of
        #    the two, not their sum). A results write that failed is retried from memory on the
        #    next pass. Count-only changes are written at most every STATUS_MIN_INTERVAL.
        memory.pending.update(decided.new_results)
        if "recentFailures" in decided.status:
            memory.recent_failures = decided.status["recentFailures"]
        write_status = False
        if decided.status_changed:
            urgent = bool(decided.fit_finished
                          or _conditions_flipped(body.get("status"), decided.status)
                          or (body.get("status") or {}).get("observedGeneration") != ref.generation)
            wait = memory.last_status_write + STATUS_MIN_INTERVAL - time.monotonic()
            write_status = urgent or wait <= 0
            if not write_status:
                self.enqueue(key, wait)
        writes = []
        if memory.pending:
            writes.append(self._write_results(ref, memory))
        if write_status:
            writes.append(self._call_status(self.kube.patch_study_status, ns, ref.name, decided.status,
                                            body.get("status"), meta.get("resourceVersion")))
        if writes:
            done = await asyncio.gather(*writes, return_exceptions=True)
            lap("configmap+status")
            if write_status:
                updated = done[-1]
                if isinstance(updated, BaseException):
                    raise updated
                memory.last_status_write = time.monotonic()
                if updated and _rv(updated) >= _rv(memory.body):
                    memory.body = updated
                written = time.time()
                for h in decided.harvested:
                    if h.finished_at is not None:
                        self.metrics.observe_harvest_latency(written - h.finished_at)
            if memory.pending:
                log.warning("study %s/%s: results ConfigMap write failed (%s); retrying", ns,
                            ref.name, done[0])
                self.enqueue(key, ERROR_REQUEUE)
        # Everything harvested is in a results ConfigMap (a Job may only expire once its
        # result is kept there).
        durable = not memory.pending

        # 3. TTLs, rendezvous Services and new run Jobs: in the background, so that the next
        #    harvest does not wait for them. Created names are "expected" at once (they count
        #    against maxParallelRuns) and TTLs under way are not planned twice.
        if durable:
            ttls = [(n, t) for n, t in decided.ttl_patches
                    if n not in memory.ttl_inflight and n not in memory.ttl_done]
            memory.ttl_inflight.update(n for n, _ in ttls)
            for m in decided.create_jobs:
                memory.expected[m["metadata"]["name"]] = time.monotonic()
            if ttls or decided.create_jobs or decided.delete_services:
                self._spawn(self._apply_jobs(key, memory, ns, ttls, decided.create_jobs,
                                             decided.create_services, decided.delete_services))
            if decided.create_jobs:
                log.info("study %s/%s: created %d run Jobs", ns, ref.name, len(decided.create_jobs))

        # 4. the fit
        if durable and decided.fit_job is not None:
            await self._call(self.kube.put_configmap_binary, fit_input_configmap(ref),
                             {names.FIT_INPUT_FILE: fit_input.encode_b64(decided.fit_input)})
            await self._call(self.kube.create_job, decided.fit_job)
            memory.expected[decided.fit_job["metadata"]["name"]] = time.monotonic()
            log.info("study %s/%s: every run is terminal; fit Job %s created", ns, ref.name,
                     decided.fit_job["metadata"]["name"])

        # Events last: they are information, never state.
        if durable and decided.events:
            now_text = format_time(time.time())
            for ev in decided.events:
                try:
                    await self._call(self.kube.post_event, memory.body, ev.type, ev.reason, ev.message, now_text)
                except Exception as exc:  # noqa: BLE001 - an Event lost is not worth a retry
                    log.warning("could not post event %s: %s", ev.reason, exc)
            for ev in decided.events:
                log.info("study %s/%s: %s: %s", ns, ref.name, ev.reason, ev.message)

        self.metrics.observe_plan(ns, ref.name, decided, time.time())
        if decided.waiting:
            self.enqueue(key, SHORT_REQUEUE)
        took = time.perf_counter() - started
        self.metrics.observe_reconcile(took)
        if took > 2.0:
            log.info("study %s/%s: slow pass %.1f s (%s)", ns, ref.name, took,
                     ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in steps.items()))
        return decided


def _refusal(exc: BaseException) -> str:
    """The API server's message when `exc` is a refusal that retrying cannot fix (a 4xx other
    than conflict and throttling), else ""."""
    status = getattr(exc, "status", None)
    if isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429):
        return str(getattr(exc, "reason", "") or exc)[:500]
    return ""


def _conditions_flipped(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    before = {c.get("type"): (c.get("status"), c.get("reason")) for c in (old or {}).get("conditions") or ()}
    after = {c.get("type"): (c.get("status"), c.get("reason")) for c in new.get("conditions") or ()}
    return before != after

