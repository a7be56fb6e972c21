"""`make bench-chaos`: nothing lost, nothing doubled, nobody in — under faults, on the real
control plane.

A ScalingStudy of `--runs` runs (default 200: 8 models × 25 data sizes × 1 seed, 1 GPU each,
maxParallelRuns 50, backoffLimit 1, no ttlSecondsAfterFinished so every Job and pod stays for
the final count) on 16 KWOK GPU nodes (8 GPUs each). The operator runs as its own process
(`python -m ftscale operator`); this script plays the kubelet and the chaos:

* **kubelet**: each run pod that is Running on a node is finished after a random 40–120 s with
  the trainer's own termination message (tests/producers.py `trainer_message`) of a known
  test loss — or, for 5 % of pods (`--fail-fraction`), with exit code 1 (a retriable crash).
  Which pod fails is a pure function of (seed, run id, attempt), so the final state is known
  in advance: a run fails for good only when all backoffLimit + 1 of its attempts are drawn to
  fail (at 5 %, 1 run in 400); every other run must end Succeeded with its own loss. Pods run
  long next to an operator outage (10–20 s on a loaded machine: pause, start, first action),
  as real training runs do: a few of the 50 runs in flight finish while the operator is down,
  so each restart has work waiting, and the study lasts long enough for its kills (with pods
  of a few seconds, all 50 finish during each outage and the study ends after a few kills);
* **operator kills**: SIGKILL at `--kills` moments — the first while it creates the first
  wave of Jobs (once 10 exist), each next one a random 0–3 s after the previous restart
  recovered (once results flow) — restarted after a random 0.5–3 s pause with the same Lease
  identity (a container restart; `--fresh-identity`: a new pod, which then waits for the Lease
  to expire). One fault at a time: no kill while a recovery is awaited;
* **control plane**: the kube-apiserver is SIGKILLed and restarted once (around 40 % of the
  runs), etcd once (around 65 %), each with the same flags, ports and data dir
  (tests/cluster/control_plane.py `LocalControlPlane.restart`);
* **forgeries** (pods anyone with `create pods` in the namespace could make; each finished by
  this script with a valid-looking result claiming an unmistakable loss):
  - `unowned`: a pod with every ftscale label of a real run (study, component, run id, model,
    data size, seed, job-name; not the Job's controller-uid) and no owner, loss 0.123456;
  - `outside-grid`: a pod, owned by nothing, claiming a run id that is not in the grid, loss
    0.234567;
  - `adopted-running`: a pod copying *every* label of a real run's running pod, including the
    Job's `batch.kubernetes.io/controller-uid` selector label, loss 0.345678 — the Job
    controller adopts orphan pods that match its selector (the real pod is held Running until
    the forger is done);
  - `adopted-retry`: the same, made while the Job has no pod at all — between a failed first
    attempt (this run's first pod is always failed) and the retry the Job controller makes
    after its back-off — loss 0.456789.

Everything is counted from the cluster's final state (LISTs once the study is Fitted and every
run has a result) and from watches of the API, never from the operator's logs:

* `duplicate_jobs`: runs with more than one Job ever (every Job uid seen by a watch, plus the
  final LIST per run label), plus runs whose Job has more pods than the attempts the kubelet
  failed + 1 (the forger's own pods excluded);
* `lost_results`: grid runs without a result in the study's results ConfigMaps
  (ftscale.api.results_store.read_results), plus runs expected to succeed whose recorded result
  is not a success (the runs the `adopted-*` forgeries attack count only when they have no
  result at all: an adopted forged pod can take the place of the run's real one);
* `forged_accepted`: recorded results whose test loss is a forged value or whose run id is not
  in the grid;
* `kills`: operator SIGKILLs done;
* `recovered_seconds_p95`: per kill, seconds from the new operator process's start to the
  first thing it did that the API shows (a new Job, or a new result key in a results
  ConfigMap) — or, when nothing was waiting for it at its start (no finished run unharvested,
  no Job to create: rare, the kubelet keeps finishing pods while it is down), from the first
  pod finished after its start (`work_since`) — p95 over kills. It includes the process start
  (Python imports, kopf's initial LISTs), so it grows with the machine's load. (A watch event
  from the killed process cannot count: a new process needs more than a second to import
  kopf before it can act.)

Last line: `duplicate_jobs=0 lost_results=0 forged_accepted=0 kills=K recovered_seconds_p95=S`
(issue 14). `--smoke`: 25 runs on 4 nodes, maxParallelRuns 5, pods of 2–12 s, 3 kills, no
control-plane restarts (a quick check of the harness; not part of the test suite, which has its
own cluster tests).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import heapq
import io
import itertools
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "trainer_image"), str(REPO / "tests")]

from ftscale import results as rc  # noqa: E402
from ftscale.controller import names  # noqa: E402
from ftscale.identity import RunKey  # noqa: E402

NAMESPACE = "chaos"
STUDY = "chaos"
DATA_SIZES = [100 * (i + 1) for i in range(25)]
ROGUE_PREFIX = "rogue-"
# Losses no honest run of this benchmark reports (honest ones are ≥ 1.5, see expected_loss).
FORGED_LOSS = {"unowned": 0.123456, "outside-grid": 0.234567, "adopted-running": 0.345678,
               "adopted-retry": 0.456789}
OUTSIDE_GRID_KEY = RunKey(model="m999", method="fmt", pet_size=None, data_size=12345, seed=7)
# Seconds between one restart's recovery and the next kill: uniform in this range.
KILL_GAP = (0.0, 3.0)
# A pod bound to a node but still Pending after this long is started by our kubelet (Kubelet).
STUCK_PENDING_SECONDS = 30.0


# ---- pure parts (tests/unit/test_bench_chaos.py) ----------------------------------------------

def pod_fails(seed: int, run_id: str, attempt: int, fraction: float,
              first_fails: Iterable[str] = ()) -> bool:
    """Whether the kubelet fails attempt `attempt` (0 = the Job's first pod) of a run: a hash,
    not a random stream, so the verdict does not depend on the order pods happen to start.
    Runs in `first_fails` always fail their first attempt (the adopted-retry forgery's target)."""
    if attempt == 0 and run_id in first_fails:
        return True
    digest = hashlib.sha256(f"{seed}:{run_id}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64 < fraction


@dataclass(frozen=True)
class Expectation:
    """What the final state must show for one grid run."""

    loss: float  # the test loss the kubelet reports for it
    succeeds: bool  # False: every attempt is drawn to fail (the run ends Failed)
    max_pods: int  # pods its Job makes: failed attempts + the successful one


def expected_loss(key: RunKey) -> float:
    """The honest test loss of a run (≥ 1.5; models are named m<i>)."""
    return round(1.5 + 100.0 / key.data_size + 0.01 * int(key.model.lstrip("m") or 0), 6)


def expectation(key: RunKey, seed: int, fraction: float, backoff_limit: int,
                first_fails: Iterable[str] = ()) -> Expectation:
    for attempt in range(backoff_limit + 1):
        if not pod_fails(seed, key.run_id, attempt, fraction, first_fails):
            return Expectation(expected_loss(key), True, attempt + 1)
    return Expectation(expected_loss(key), False, backoff_limit + 1)


def grid_keys(runs: int) -> list[RunKey]:
    """The study's runs (study_manifest's grid), in grid order: runs/25 models × 25 data sizes."""
    models, rest = divmod(runs, len(DATA_SIZES))
    if rest or not 1 <= models <= 64:
        raise ValueError(f"--runs must be a multiple of {len(DATA_SIZES)} up to {64 * len(DATA_SIZES)}")
    return [RunKey(model=f"m{m}", method="fmt", pet_size=None, data_size=d, seed=0)
            for m in range(models) for d in DATA_SIZES]


def first_wave(max_parallel: int) -> int:
    """Run Jobs that exist when the first kill lands: part of the first wave, so the operator
    dies while it is creating Jobs."""
    return max(1, min(10, max_parallel // 2))


def kill_allowed(kills_done: int, kills: int, jobs_created: int, results: int, runs: int,
                 max_parallel: int) -> bool:
    """May the operator be killed now (the previous restart having recovered)? The first kill
    in the first wave of Job creations; the others once results flow (so that pods finish
    while it is down, and its recovery — its first action — is not a wait for work); none once
    every run has a result."""
    if kills_done >= kills or results >= runs:
        return False
    return jobs_created >= first_wave(max_parallel) if kills_done == 0 else results >= 1


def work_since(spawned: float, work_waiting: bool, finished_at: Iterable[float]) -> float | None:
    """When a restarted operator first had something to do: at its start when work was
    waiting (a finished run not yet harvested, a Job still to create), else at the first pod
    finished after its start (None: none yet). Its recovery is measured from there, so a
    restart in a quiet moment does not count the quiet as recovery."""
    if work_waiting:
        return spawned
    return min((t for t in finished_at if t >= spawned), default=None)


def p95(values: Iterable[float]) -> float:
    """Nearest-rank 95th percentile (as bench_operator); NaN for no values."""
    ordered = sorted(values)
    return ordered[int(0.95 * (len(ordered) - 1))] if ordered else float("nan")


@dataclass
class Audit:
    """The final-state counts; each list names the runs (or run ids) behind a count."""

    duplicate_job_runs: list[str] = field(default_factory=list)  # > 1 Job uid
    extra_pod_runs: list[str] = field(default_factory=list)  # more pods than attempts allow
    lost: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # recorded, but not what the run reported
    forged: list[str] = field(default_factory=list)  # "run id: which forgery"

    @property
    def duplicate_jobs(self) -> int:
        return len(set(self.duplicate_job_runs) | set(self.extra_pod_runs))


def forgery_of(result: rc.RunResult, grid: Mapping[str, Any]) -> str | None:
    """Which forgery a recorded result comes from, or None for an honest one."""
    if result.run_id not in grid:
        return "outside-grid"
    for name, loss in FORGED_LOSS.items():
        if result.test_loss is not None and math.isclose(result.test_loss, loss, abs_tol=1e-9):
            return name
    return None


def audit(expected: Mapping[str, Expectation], results: Mapping[str, rc.RunResult],
          job_uids: Mapping[str, set[str]], pods_per_run: Mapping[str, int],
          attacked: Iterable[str] = ()) -> Audit:
    """Compare the cluster's final state with what the kubelet made happen.

    expected: grid run id → Expectation. results: what the results ConfigMaps hold, by run id.
    job_uids: run id → every uid of a Job labelled with it (watched + final LIST). pods_per_run:
    run id → pods controlled by its Job(s) in the final LIST, the forger's own excluded.
    attacked: runs whose Job may have adopted a forged pod (their real pod may then be gone).
    """
    out = Audit()
    attacked = set(attacked)
    for run_id, result in sorted(results.items()):
        which = forgery_of(result, expected)
        if which:
            out.forged.append(f"{run_id}: {which}")
    for run_id, want in sorted(expected.items()):
        if len(job_uids.get(run_id, ())) > 1:
            out.duplicate_job_runs.append(run_id)
        if pods_per_run.get(run_id, 0) > want.max_pods:
            out.extra_pod_runs.append(run_id)
        got = results.get(run_id)
        if got is None:
            out.lost.append(run_id)
            continue
        if forgery_of(got, expected):
            continue  # counted as forged
        if want.succeeds and not got.ok:
            if run_id not in attacked:
                out.lost.append(run_id)
        elif got.ok and (not want.succeeds or got.test_loss is None
                         or not math.isclose(got.test_loss, want.loss, abs_tol=1e-9)):
            out.wrong.append(run_id)
    return out


def study_manifest(models: int, max_parallel: int, backoff_limit: int) -> dict:
    from cluster.kubelet import HOLD_KEY

    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": STUDY},
        "spec": {
            "task": {"name": "toy-en-de"},
            "models": [{"name": f"m{i}", "source": f"toy:m{i}", "parameters": 10_000 * (i + 1), "gpus": 1}
                       for i in range(models)],
            "methods": [{"name": "fmt"}],
            "dataSizes": DATA_SIZES,
            "seeds": [0],
            # No ttlSecondsAfterFinished: every Job (and its pods) stays for the final count.
            "execution": {"image": "ftscale/trainer:bench", "maxParallelRuns": max_parallel,
                          "backoffLimit": backoff_limit, "labels": {HOLD_KEY: "true"}},
        },
    }


def honest_result(key: RunKey) -> rc.RunResult:
    return rc.RunResult(study=STUDY, run_id=key.run_id, model=key.model, method=key.method,
                        pet_size=key.pet_size, data_size=key.data_size, seed=key.seed,
                        test_loss=expected_loss(key), best_dev_loss=1.4, model_params=1000,
                        steps=10, wall_seconds=1.0)


def forged_result(key: RunKey, forgery: str) -> rc.RunResult:
    """A result with the run's identity right and a forged loss (FORGED_LOSS[forgery])."""
    return dataclasses.replace(honest_result(key), test_loss=FORGED_LOSS[forgery])


def termination_message(result: rc.RunResult) -> str:
    """The trainer's own termination message for `result` (its entry point also prints it)."""
    from producers import trainer_message

    with contextlib.redirect_stdout(io.StringIO()):
        return trainer_message(result)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A study on a local control plane (KWOK GPU nodes) while the operator is "
                    "SIGKILLed, the API server and etcd restart, pods fail and rogue pods forge "
                    "results; counts duplicates, losses and accepted forgeries from the final "
                    "state.")
    parser.add_argument("--runs", type=int, default=200,
                        help="runs in the study, a multiple of 25 (default 200: 8 models × 25 sizes)")
    parser.add_argument("--kills", type=int, default=20, help="operator SIGKILLs (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--fail-fraction", type=float, default=0.05,
                        help="fraction of run pods the kubelet fails with exit code 1 (default 0.05)")
    parser.add_argument("--backoff-limit", type=int, default=1,
                        help="the study's execution.backoffLimit: retries of a failed pod (default 1)")
    parser.add_argument("--pod-seconds", type=float, nargs=2, default=(40.0, 120.0), metavar=("MIN", "MAX"),
                        help="how long a run pod runs before the kubelet finishes it: uniform in "
                             "[MIN, MAX] (default 40 120; see the module docstring for why)")
    parser.add_argument("--nodes", type=int, default=16, help="KWOK GPU nodes, 8 GPUs each (default 16)")
    parser.add_argument("--max-parallel", type=int, default=50, help="maxParallelRuns (default 50)")
    parser.add_argument("--no-restarts", action="store_true",
                        help="do not restart the kube-apiserver and etcd")
    parser.add_argument("--fresh-identity", action="store_true",
                        help="give each restarted operator a new Lease identity (a new pod rather "
                             "than a container restart: it waits for the Lease to expire)")
    parser.add_argument("--forgeries", default=",".join(FORGED_LOSS),
                        help=f"which forgeries to attempt, comma-separated (default: all of "
                             f"{','.join(FORGED_LOSS)})")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds the study may take before the benchmark gives up (default 1800)")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check: 25 runs on 4 nodes, 3 kills, no control-plane restarts")
    args = parser.parse_args(argv)
    if args.smoke:
        args.runs, args.kills, args.nodes, args.no_restarts = 25, 3, 4, True
        args.max_parallel, args.pod_seconds = min(args.max_parallel, 5), (2.0, 12.0)
    if not 0.0 <= args.fail_fraction < 1.0:
        parser.error("--fail-fraction must be in [0, 1)")
    args.forgeries = [f for f in args.forgeries.split(",") if f]
    unknown = set(args.forgeries) - set(FORGED_LOSS)
    if unknown:
        parser.error(f"unknown forgeries {sorted(unknown)}; choose from {','.join(FORGED_LOSS)}")
    try:
        grid_keys(args.runs)
    except ValueError as exc:
        parser.error(str(exc))
    return args


# ---- the cluster side -------------------------------------------------------------------------

def _ignore_conflict(call, *args, **kwargs):
    from kubernetes.client.rest import ApiException

    try:
        return call(*args, **kwargs)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return None


def _retrying(call, *args, deadline: float = 120.0, **kwargs):
    """Call through an API-server restart: retry connection errors and 5xx for `deadline` s."""
    from kubernetes.client.rest import ApiException

    end = time.time() + deadline
    while True:
        try:
            return call(*args, **kwargs)
        except ApiException as exc:
            if exc.status < 500 and exc.status != 429 or time.time() > end:
                raise
        except Exception:  # noqa: BLE001 - connection refused/reset while it restarts
            if time.time() > end:
                raise
        time.sleep(0.5)


class Activity:
    """Times at which the API showed the operator doing something (a new Job, a new result)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = 0.0

    def saw(self, at: float) -> None:
        with self.lock:
            self.last = max(self.last, at)


class Watcher:
    """A watch that reconnects (with a fresh LIST) whenever the API server drops it."""

    def __init__(self, api, list_call, label_selector: str):
        self.api = api
        self.list_call = list_call
        self.selector = label_selector
        self.stop = threading.Event()

    def handle(self, kind: str, obj: dict) -> None:
        raise NotImplementedError

    def run(self) -> None:
        from kubernetes import watch

        while not self.stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(self.list_call, NAMESPACE, label_selector=self.selector,
                                   timeout_seconds=30):
                    if self.stop.is_set():
                        break
                    self.handle(ev["type"], self.api.sanitize_for_serialization(ev["object"]))
            except Exception:  # noqa: BLE001 - the API server restarts: reconnect
                time.sleep(0.5)


class JobWatcher(Watcher):
    """Every run Job uid ever seen, per run label (a Job deleted and re-created shows twice)."""

    def __init__(self, api, activity: Activity):
        from kubernetes import client

        super().__init__(api, client.BatchV1Api(api).list_namespaced_job,
                         f"{names.LABEL_STUDY}={STUDY},{names.LABEL_COMPONENT}={names.COMPONENT_RUN}")
        self.activity = activity
        self.uids: dict[str, set[str]] = {}
        self.lock = threading.Lock()

    def handle(self, kind: str, obj: dict) -> None:
        run_id = (obj["metadata"].get("labels") or {}).get(names.LABEL_RUN, "?")
        uid = obj["metadata"]["uid"]
        with self.lock:
            seen = self.uids.setdefault(run_id, set())
            if uid not in seen:
                seen.add(uid)
                self.activity.saw(time.time())


class ResultsWatcher(Watcher):
    """The run ids with a key in the study's results ConfigMaps, and when each first showed."""

    def __init__(self, api, activity: Activity):
        from kubernetes import client
        from ftscale.api import results_store

        super().__init__(api, client.CoreV1Api(api).list_namespaced_config_map,
                         results_store.label_selector(STUDY))
        self.suffix = results_store.KEY_SUFFIX
        self.activity = activity
        self.seen_at: dict[str, float] = {}

    def handle(self, kind: str, obj: dict) -> None:
        now = time.time()
        for key in obj.get("data") or {}:
            if key.endswith(self.suffix) and key[: -len(self.suffix)] not in self.seen_at:
                self.seen_at[key[: -len(self.suffix)]] = now
                self.activity.saw(now)


class Kubelet(Watcher):
    """Finishes each Job's pod once it is Running on a node, after a random delay: with the
    run's result, or (pod_fails) with exit code 1. The fit pod gets the fit Job's real output.
    Pods the forger made are left alone; runs in `hold` wait until released.

    A pod bound to a node that stays Pending for STUCK_PENDING_SECONDS is taken as started:
    KWOK (v0.8) drops a stage whose status patch failed — as during an API-server or etcd
    restart — and never retries it, where a real kubelet would sync the pod again."""

    def __init__(self, api, args, messages: dict[str, str], fit_message: str, hold: set[str],
                 first_fails: set[str]):
        from kubernetes import client

        super().__init__(api, client.CoreV1Api(api).list_namespaced_pod, names.LABEL_STUDY)
        self.core = client.CoreV1Api(api)
        self.args = args
        self.messages = messages
        self.fit_message = fit_message
        self.hold = hold
        self.first_fails = first_fails
        self.rng = random.Random(args.seed + 1)
        self.lock = threading.Condition()
        self.queue: list[tuple[float, int, dict]] = []
        self.counter = itertools.count()
        self.attempts: dict[str, list[str]] = {}  # Job name → its pods, in the order seen
        self.running_pod: dict[str, dict] = {}  # run id → its newest Running pod
        self.finished = {"succeeded": 0, "failed": 0, "fit": 0}
        self.failed_pod: dict[str, dict] = {}  # run id → its last pod failed here
        self.pending: dict[str, tuple[float, dict]] = {}  # bound pods not Running yet: since, pod
        self.started_here: list[str] = []  # pods KWOK left Pending, started by this kubelet
        self.succeeded_at: dict[str, float] = {}  # run id → when its pod was finished with a result

    def handle(self, kind: str, pod: dict) -> None:
        meta = pod["metadata"]
        owners = [o for o in meta.get("ownerReferences") or () if o.get("kind") == "Job"]
        if meta["name"].startswith(ROGUE_PREFIX) or not owners:
            return
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            if phase == "Pending" and pod["spec"].get("nodeName") and kind != "DELETED":
                since = self.pending.get(meta["name"], (time.time(), None))[0]
                self.pending[meta["name"]] = (since, pod)
                return
            self.pending.pop(meta["name"], None)
        if phase == "Running" and pod["spec"].get("nodeName") and kind != "DELETED":
            self._start(pod)

    def _start(self, pod: dict) -> None:
        """The pod's container runs from now on: finish it after a random time."""
        meta = pod["metadata"]
        job = [o for o in meta["ownerReferences"] if o.get("kind") == "Job"][0]["name"]
        with self.lock:
            pods = self.attempts.setdefault(job, [])
            if meta["name"] in pods:
                return
            pods.append(meta["name"])
            run_id = (meta.get("labels") or {}).get(names.LABEL_RUN)
            if run_id:
                self.running_pod[run_id] = pod
            due = time.time() + self.rng.uniform(*self.args.pod_seconds)
            heapq.heappush(self.queue, (due, next(self.counter), pod))
            self.lock.notify()

    def release(self, run_id: str) -> None:
        with self.lock:
            self.hold.discard(run_id)

    def finisher(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=8)
        while not self.stop.is_set():
            with self.lock:
                now = time.time()
                for name, (since, pod) in list(self.pending.items()):
                    if now - since > STUCK_PENDING_SECONDS:
                        del self.pending[name]
                        self.started_here.append(name)
                        self._start(pod)
                if not self.queue or self.queue[0][0] > now:
                    self.lock.wait(timeout=0.2 if not self.queue else min(0.2, self.queue[0][0] - now))
                    continue
                due, _, pod = heapq.heappop(self.queue)
                run_id = (pod["metadata"].get("labels") or {}).get(names.LABEL_RUN)
                if run_id in self.hold:
                    heapq.heappush(self.queue, (now + 0.3, next(self.counter), pod))
                    continue
            pool.submit(self._finish, pod)
        pool.shutdown(wait=False)

    def _finish(self, pod: dict) -> None:
        from kubernetes.client.rest import ApiException
        from cluster.kubelet import STRATEGIC_MERGE_PATCH, terminated_status_patch

        meta = pod["metadata"]
        labels = meta.get("labels") or {}
        if labels.get(names.LABEL_COMPONENT) == names.COMPONENT_FIT:
            code, message = 0, self.fit_message
        else:
            run_id = labels[names.LABEL_RUN]
            job = [o for o in meta["ownerReferences"] if o.get("kind") == "Job"][0]["name"]
            with self.lock:
                attempt = self.attempts[job].index(meta["name"])
            if pod_fails(self.args.seed, run_id, attempt, self.args.fail_fraction, self.first_fails):
                code, message = 1, "RuntimeError: injected by bench-chaos (a crash)\n"
            else:
                code, message = 0, self.messages[run_id]
        try:
            self.core.patch_namespaced_pod_status(meta["name"], NAMESPACE,
                                                  terminated_status_patch(pod, code, message),
                                                  _content_type=STRATEGIC_MERGE_PATCH)
        except ApiException as exc:
            if exc.status == 404:
                return  # deleted meanwhile (e.g. the Job controller removed an extra pod)
            self._again(pod)
            return
        except Exception:  # noqa: BLE001 - the API server is restarting: try again shortly
            self._again(pod)
            return
        with self.lock:
            fit = labels.get(names.LABEL_COMPONENT) == names.COMPONENT_FIT
            self.finished["fit" if fit else "succeeded" if code == 0 else "failed"] += 1
            if code != 0 and labels.get(names.LABEL_RUN):
                self.failed_pod[labels[names.LABEL_RUN]] = pod
            elif not fit:
                self.succeeded_at[labels[names.LABEL_RUN]] = time.time()

    def _again(self, pod: dict) -> None:
        with self.lock:
            heapq.heappush(self.queue, (time.time() + 1.0, next(self.counter), pod))
            self.lock.notify()


def forge(core, name: str, labels: dict[str, str], node: str, message: str, timeout: float = 120.0) -> str:
    """Create a pod owned by nothing, wait until KWOK runs it, and finish it with `message`
    (exit 0) — what anyone allowed to create pods in the namespace can do. Returns what
    happened to it ("finished", or "deleted before it finished": the Job controller removes an
    adopted pod beyond the Job's parallelism)."""
    from kubernetes.client.rest import ApiException
    from cluster.kubelet import STRATEGIC_MERGE_PATCH, terminated_status_patch

    gone = "deleted (by the Job controller) before it finished"
    body = {"metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": node, "restartPolicy": "Never",
                     "containers": [{"name": names.RUN_CONTAINER, "image": "ftscale/trainer:bench"}]}}
    _retrying(_ignore_conflict, core.create_namespaced_pod, NAMESPACE, body)
    end = time.time() + timeout
    while True:
        try:
            pod = core.api_client.sanitize_for_serialization(
                _retrying(core.read_namespaced_pod, name, NAMESPACE))
        except ApiException as exc:
            if exc.status == 404:
                return gone
            raise
        if pod["metadata"].get("deletionTimestamp"):
            return gone
        if (pod.get("status") or {}).get("phase") == "Running":
            break
        if time.time() > end:
            raise TimeoutError(f"rogue pod {name} never Running")
        time.sleep(0.2)
    while True:
        try:
            core.patch_namespaced_pod_status(name, NAMESPACE, terminated_status_patch(pod, 0, message),
                                             _content_type=STRATEGIC_MERGE_PATCH)
            return "finished"
        except ApiException as exc:
            if exc.status == 404:
                return gone
            if exc.status < 500 or time.time() > end:
                raise
        except Exception:  # noqa: BLE001
            if time.time() > end:
                raise
        time.sleep(0.5)


def run_labels(key: RunKey, job_name: str) -> dict[str, str]:
    """The labels the operator puts on a run's pods (templates.py), minus the Job's own uid."""
    from cluster.kubelet import HOLD_KEY

    return {names.LABEL_STUDY: STUDY, names.LABEL_COMPONENT: names.COMPONENT_RUN,
            names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_RUN: key.run_id,
            names.LABEL_MODEL: key.model, names.LABEL_METHOD: key.method,
            names.LABEL_PET_SIZE: names.label_value(key.pet_size),
            names.LABEL_DATA_SIZE: str(key.data_size), names.LABEL_SEED: str(key.seed),
            "batch.kubernetes.io/job-name": job_name, "job-name": job_name, HOLD_KEY: "true"}


class Operator:
    """The operator process: started, SIGKILLed and started again, all into one log."""

    def __init__(self, kubeconfig: str, fresh_identity: bool):
        self.kubeconfig = kubeconfig
        self.fresh_identity = fresh_identity
        self.log_path = Path(tempfile.mkstemp(prefix="bench-chaos-operator-", suffix=".log")[1])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> float:
        def free_port() -> int:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                return s.getsockname()[1]

        identity = f"chaos-{self.starts}" if self.fresh_identity else "chaos"
        self.starts += 1
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}",
               "FTSCALE_LOG_FORMAT": "plain"}
        with open(self.log_path, "ab") as log:
            log.write(f"\n==== bench-chaos: operator start {self.starts} ({identity}) ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ftscale", "operator", "--kubeconfig", self.kubeconfig,
                 "--namespace", NAMESPACE, "--metrics-port", str(free_port()),
                 "--health-port", str(free_port()), "--lease-namespace", NAMESPACE,
                 "--identity", identity],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        return time.time()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def setup_cluster(api, crd_path: Path) -> None:
    import yaml
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    ext = client.ApiextensionsV1Api(api)
    crd = yaml.safe_load(crd_path.read_text())
    _ignore_conflict(ext.create_custom_resource_definition, crd)
    deadline = time.time() + 30
    while not any(c.type == "Established" and c.status == "True"
                  for c in ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or ()):
        assert time.time() < deadline, "CRD not Established"
        time.sleep(0.2)
    _ignore_conflict(core.create_namespace, {"metadata": {"name": NAMESPACE}})
    deadline = time.time() + 30
    while True:
        try:
            core.read_namespaced_service_account("default", NAMESPACE)
            return
        except ApiException:
            assert time.time() < deadline, "no default ServiceAccount"
            time.sleep(0.2)


def final_state(api, study_uid: str):
    """(results by run id, Job uids by run label, pods by run, the study, the forger's pods by
    name) from LISTs now."""
    from kubernetes import client
    from ftscale.api import results_store

    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    shards = [api.sanitize_for_serialization(cm) for cm in core.list_namespaced_config_map(
        NAMESPACE, label_selector=results_store.label_selector(STUDY)).items]
    recorded = results_store.read_results(STUDY, study_uid, shards)
    jobs = [api.sanitize_for_serialization(j) for j in batch.list_namespaced_job(
        NAMESPACE, label_selector=f"{names.LABEL_STUDY}={STUDY},{names.LABEL_COMPONENT}={names.COMPONENT_RUN}").items]
    job_uids: dict[str, set[str]] = {}
    run_of_job: dict[str, str] = {}
    for job in jobs:
        run_id = (job["metadata"].get("labels") or {}).get(names.LABEL_RUN, "?")
        job_uids.setdefault(run_id, set()).add(job["metadata"]["uid"])
        run_of_job[job["metadata"]["uid"]] = run_id
    pods_per_run: dict[str, int] = {}
    rogue: dict[str, dict] = {}
    for item in core.list_namespaced_pod(NAMESPACE).items:
        pod = api.sanitize_for_serialization(item)
        meta = pod["metadata"]
        if meta["name"].startswith(ROGUE_PREFIX):
            rogue[meta["name"]] = pod
            continue
        for ref in meta.get("ownerReferences") or ():
            if ref.get("controller") and ref.get("uid") in run_of_job:
                run_id = run_of_job[ref["uid"]]
                pods_per_run[run_id] = pods_per_run.get(run_id, 0) + 1
    study = client.CustomObjectsApi(api).get_namespaced_custom_object(
        names.GROUP, names.VERSION, NAMESPACE, names.PLURAL, STUDY)
    return recorded.results, job_uids, pods_per_run, study, rogue


def main(argv=None) -> int:  # noqa: C901 - one scenario, told in order
    args = parse_args(argv)
    from kubernetes import client, config
    from tqdm import tqdm

    from cluster.control_plane import LocalControlPlane
    from ftscale.controller.desired import desired_runs
    from ftscale.spec import crd_path
    from producers import example_fit_message

    rng = random.Random(args.seed)
    keys = grid_keys(args.runs)
    models = args.runs // len(DATA_SIZES)
    manifest = study_manifest(models, args.max_parallel, args.backoff_limit)
    # The operator's own expansion of the spec: the run ids and Job names it will use.
    desired = {r.key.run_id: r for r in desired_runs(STUDY, manifest["spec"])}
    assert set(desired) == {k.run_id for k in keys}, "grid_keys disagrees with the operator's grid"
    # Forgery targets: the grid's last run (its Job is made last, so the unowned pod is there
    # first); a run a third of the way in whose first attempt succeeds (adopted-running); a run
    # half-way whose first attempt is failed on purpose and whose retry succeeds (adopted-retry).
    plain = {k.run_id: expectation(k, args.seed, args.fail_fraction, args.backoff_limit) for k in keys}
    unowned_key = keys[-1]
    running_key = next(k for k in keys[len(keys) // 3:] if plain[k.run_id].max_pods == 1 and k != unowned_key)
    retry_key = next(k for k in keys[len(keys) // 2:] if k not in (unowned_key, running_key)
                     and not pod_fails(args.seed, k.run_id, 1, args.fail_fraction))
    if args.backoff_limit < 1 or "adopted-retry" not in args.forgeries:
        retry_key = None  # (with backoffLimit 0 there is no retry to wait for: no window)
    first_fails = {retry_key.run_id} if retry_key else set()
    expected = {k.run_id: expectation(k, args.seed, args.fail_fraction, args.backoff_limit, first_fails)
                for k in keys}
    messages = {k.run_id: termination_message(honest_result(k)) for k in keys}
    with contextlib.redirect_stdout(io.StringIO()):  # the fit Job's entry point prints its summary
        fit_message = example_fit_message(STUDY)
    attacked = ({running_key.run_id} if "adopted-running" in args.forgeries else set()) | first_fails

    cache = Path(os.environ.get("FTSCALE_CACHE", Path.home() / ".cache" / "ftscale"))
    cache.mkdir(parents=True, exist_ok=True)
    plane = LocalControlPlane(Path(tempfile.mkdtemp(prefix="bench-chaos-", dir=cache)),
                              gpu_nodes=args.nodes, cpu_nodes=0)
    print(f"starting a control plane with {args.nodes} KWOK GPU nodes in {plane.state_dir} ...", flush=True)
    kubeconfig = str(plane.start(owner_pid=os.getpid()))
    operator = Operator(kubeconfig, args.fresh_identity)
    finished = False
    workers: list[Watcher] = []
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        api.configuration.connection_pool_maxsize = 16
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        setup_cluster(api, crd_path())
        nodes = sorted(n.metadata.name for n in core.list_node().items
                       if (n.status.allocatable or {}).get("nvidia.com/gpu"))

        activity = Activity()
        jobs, results = JobWatcher(api, activity), ResultsWatcher(api, activity)
        hold = {running_key.run_id} if "adopted-running" in args.forgeries else set()
        kubelet = Kubelet(api, args, messages, fit_message, hold=hold,
                          first_fails=first_fails)
        workers = [jobs, results, kubelet]
        threads = [threading.Thread(target=w.run, daemon=True) for w in workers]
        threads.append(threading.Thread(target=kubelet.finisher, daemon=True))
        for t in threads:
            t.start()

        operator.start()
        t0 = time.time()
        study = custom.create_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE,
                                                       names.PLURAL, manifest)
        study_uid = study["metadata"]["uid"]

        # Two forgeries at once: a real run's labels before its Job exists, and a run not in the grid.
        forgeries: list[threading.Thread] = []
        errors: list[str] = []
        forged_outcome: dict[str, str] = {}

        def forge_in_thread(which, labels, node, message, after=None):
            def go():
                try:
                    forged_outcome[which] = forge(core, ROGUE_PREFIX + which, labels, node, message)
                except Exception as exc:  # noqa: BLE001 - reported, and the benchmark fails
                    errors.append(f"forgery {which}: {exc}")
                finally:
                    if after:
                        after()
            t = threading.Thread(target=go, daemon=True)
            t.start()
            forgeries.append(t)

        if "unowned" in args.forgeries:
            forge_in_thread("unowned", run_labels(unowned_key, desired[unowned_key.run_id].job_name),
                            nodes[0], termination_message(forged_result(unowned_key, "unowned")))
        if "outside-grid" in args.forgeries:
            forge_in_thread("outside-grid", run_labels(OUTSIDE_GRID_KEY, f"{STUDY}-{OUTSIDE_GRID_KEY.run_id}"),
                            nodes[-1], termination_message(forged_result(OUTSIDE_GRID_KEY, "outside-grid")))
        # The adopted forgeries wait for their moment: (target, where its labels come from).
        adopted = {}
        if "adopted-running" in args.forgeries:
            adopted["adopted-running"] = (running_key, kubelet.running_pod)
        if retry_key:
            adopted["adopted-retry"] = (retry_key, kubelet.failed_pod)

        restarts = [] if args.no_restarts else [
            (rng.uniform(0.35, 0.45) * args.runs, "kube-apiserver"),
            (rng.uniform(0.6, 0.7) * args.runs, "etcd")]
        kills_done = 0
        recovered: list[float] = []  # per kill
        plane_recovered: list[tuple[str, float, float]] = []  # (component, down s, operator acted after s)
        # (what, since, work was waiting then): waiting for the operator to act
        awaiting: tuple[str, float, bool] | None = None
        next_at: float | None = None  # when the next kill is due (a random gap after eligibility)
        load_avg = []
        bar = tqdm(total=args.runs, desc="runs with a result", unit="run")
        last_poll = 0.0
        fitted = False
        while True:
            time.sleep(0.2)
            now = time.time()
            done = len([r for r in results.seen_at if r in expected])
            bar.update(done - bar.n)
            bar.set_postfix(kills=kills_done, restarts=len(plane_recovered))
            if len(load_avg) < (now - t0) / 30:
                load_avg.append(os.getloadavg()[0])
            if errors:
                raise RuntimeError("; ".join(errors))
            if not operator.alive():
                raise RuntimeError(f"the operator exited by itself; log: {operator.log_path}")
            assert now - t0 < args.timeout, f"the study did not finish within {args.timeout:.0f} s"

            # the adopted forgeries: copy every label of the target's pod once it runs (held
            # Running until the forger is done) or once it has failed (before the retry)
            for which, (key, source) in list(adopted.items()):
                with kubelet.lock:
                    real = source.get(key.run_id)
                if real is None:
                    continue
                del adopted[which]
                forge_in_thread(which, dict(real["metadata"]["labels"]), real["spec"]["nodeName"],
                                termination_message(forged_result(key, which)),
                                after=lambda k=key: kubelet.release(k.run_id))

            if awaiting is not None:
                what, spawned, waiting = awaiting
                with kubelet.lock:
                    since = work_since(spawned, waiting, list(kubelet.succeeded_at.values()))
                if since is not None and activity.last > since:
                    delay = activity.last - since
                    if what == "kill":
                        recovered.append(delay)
                    else:
                        plane_recovered[-1] = (*plane_recovered[-1][:2], delay)
                    awaiting = None
                    next_at = None
                continue  # one fault at a time: each recovery is measured on its own
            if restarts and done >= restarts[0][0]:
                _, component = restarts.pop(0)
                down = plane.restart(component, sig=signal.SIGKILL, down_seconds=rng.uniform(1.0, 3.0))
                plane_recovered.append((component, down, float("nan")))
                awaiting = ("restart", time.time(), True)
                continue
            with jobs.lock:
                jobs_created = len(jobs.uids)
            if kill_allowed(kills_done, args.kills, jobs_created, done, args.runs, args.max_parallel):
                if next_at is None:
                    next_at = now + (rng.uniform(*KILL_GAP) if kills_done else 0.0)
                if now >= next_at:
                    operator.kill()
                    kills_done += 1
                    time.sleep(rng.uniform(0.5, 3.0))
                    spawned = operator.start()
                    with kubelet.lock:
                        backlog = any(r not in results.seen_at for r in kubelet.succeeded_at)
                    in_flight = jobs_created - done
                    to_create = jobs_created < args.runs and in_flight < args.max_parallel
                    awaiting = ("kill", spawned, backlog or to_create)
                continue
            if done >= args.runs and now - last_poll > 2.0:
                last_poll = now
                try:
                    obj = custom.get_namespaced_custom_object(names.GROUP, names.VERSION, NAMESPACE,
                                                              names.PLURAL, STUDY)
                except Exception:  # noqa: BLE001 - the API server may be coming back
                    continue
                fitted = any(c.get("type") == "Fitted" and c.get("status") == "True"
                             for c in (obj.get("status") or {}).get("conditions") or ())
                if fitted:
                    break
        t_end = time.time()
        bar.close()
        for t in forgeries:
            t.join(timeout=60)
        time.sleep(3.0)  # let anything still in flight land before the final LISTs
        final, job_uids, pods_per_run, study_obj, rogue_pods = final_state(api, study_uid)
        for w in workers:
            w.stop.set()
        with jobs.lock:
            for run_id, uids in jobs.uids.items():
                job_uids.setdefault(run_id, set()).update(uids)
        result = audit(expected, final, job_uids, pods_per_run, attacked=attacked)
        status = study_obj.get("status") or {}

        expect_failed = sorted(r for r, e in expected.items() if not e.succeeds)
        print()
        print(f"runs: {args.runs} ({models} models × {len(DATA_SIZES)} data sizes × 1 seed) on "
              f"{len(nodes)} KWOK GPU nodes, maxParallelRuns {args.max_parallel}, backoffLimit "
              f"{args.backoff_limit}, seed {args.seed}")
        print(f"machine load (1-min load average, every 30 s): "
              f"{' '.join(f'{x:.1f}' for x in load_avg)} ({os.cpu_count()} CPUs)")
        print(f"apply -> every run with a result and the law fitted: {t_end - t0:.1f} s")
        print(f"kubelet: {kubelet.finished['succeeded']} run pods finished with a result, "
              f"{kubelet.finished['failed']} failed with exit code 1 ({args.fail_fraction:.0%} drawn per "
              f"pod); {kubelet.finished['fit']} fit pod(s); runs expected to fail for good: "
              f"{len(expect_failed)} {expect_failed}")
        if kubelet.started_here:
            print(f"KWOK left {len(kubelet.started_here)} bound pod(s) Pending (a status patch lost "
                  f"in a control-plane restart); started by this kubelet: {kubelet.started_here}")
        print(f"operator: {kills_done} SIGKILLs; recovery (restart -> next Job or result), s: "
              f"{' '.join(f'{x:.1f}' for x in recovered)}")
        for component, down, after in plane_recovered:
            print(f"{component}: SIGKILLed and restarted ({down:.1f} s until healthy); the operator "
                  f"acted again {after:.1f} s later")
        print(f"final state: {len(final)} results in the results ConfigMaps "
              f"({sum(1 for r in final.values() if r.ok)} Succeeded, "
              f"{sum(1 for r in final.values() if not r.ok)} Failed); status runsSucceeded="
              f"{status.get('runsSucceeded')} runsFailed={status.get('runsFailed')}; "
              f"{sum(len(u) for r, u in job_uids.items() if r in expected)} run Jobs, "
              f"{sum(pods_per_run.values())} run pods")
        targets = {"unowned": unowned_key, "outside-grid": OUTSIDE_GRID_KEY,
                   "adopted-running": running_key, "adopted-retry": retry_key}
        for which, key in targets.items():
            if which not in args.forgeries or key is None:
                print(f"forgery {which}: not attempted")
                continue
            pod = rogue_pods.get(ROGUE_PREFIX + which)
            print(f"forgery {which}: the pod {forged_outcome.get(which, 'was never made')}; now "
                  f"{_pod_state(pod)}; run {key.run_id} recorded: {_describe(final.get(key.run_id))}")
        for label, items in (("duplicate Jobs", result.duplicate_job_runs), ("extra pods", result.extra_pod_runs),
                             ("lost", result.lost), ("wrong", result.wrong), ("forged", result.forged)):
            if items:
                print(f"  {label}: {items[:20]}")
        print(f"operator log: {operator.log_path}")
        finished = True
        ok = (result.duplicate_jobs == 0 and not result.lost and not result.forged and not result.wrong
              and kills_done >= args.kills)
        if kills_done < args.kills:
            print(f"only {kills_done} of {args.kills} kills happened before the study finished")
        print(f"duplicate_jobs={result.duplicate_jobs} lost_results={len(result.lost)} "
              f"forged_accepted={len(result.forged)} kills={kills_done} "
              f"recovered_seconds_p95={p95(recovered):.1f}")
        return 0 if ok else 1
    finally:
        for w in workers:
            w.stop.set()
        operator.stop()
        plane.stop()
        if finished:
            shutil.rmtree(plane.state_dir, ignore_errors=True)
        else:
            print(f"control-plane state and logs kept in {plane.state_dir}; operator log "
                  f"{operator.log_path}", file=sys.stderr)


def _pod_state(pod: dict | None) -> str:
    if pod is None:
        return "gone"
    owners = [f"{r.get('kind')} {r.get('name')}" for r in pod["metadata"].get("ownerReferences") or ()]
    return f"{(pod.get('status') or {}).get('phase')}, owned by {', '.join(owners) or 'nothing'}"


def _describe(result: rc.RunResult | None) -> str:
    if result is None:
        return "nothing"
    if result.ok:
        return f"Succeeded, test loss {result.test_loss}"
    return f"Failed ({result.reason}: {(result.message or '')[:120]})"


if __name__ == "__main__":
    sys.exit(main())
