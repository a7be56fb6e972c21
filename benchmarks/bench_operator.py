"""`make bench-operator`: the operator at scale on the real control plane.

A ScalingStudy of `--runs` runs (default 1,000: 10 models × 25 data sizes × 4 seeds, 1 GPU
each; 10,000: 40 models × 25 data sizes × 10 seeds) on `--nodes` KWOK GPU nodes (default 32,
8 GPUs each: 256 runs fit at once), maxParallelRuns `--max-parallel` (default 300). The
operator runs as its own process (`python -m ftscale operator`); this script plays the
kubelet: every run pod that starts is finished at once with a valid result in its termination
message. With `--load QPS`, a second client hammers the API server meanwhile at a fixed,
bounded rate: half paged LISTs of the study's pods (500 a page), half PATCHes of a Secret's
annotation in another namespace (a write the operator's counts below do not include). It
measures:

* time from `create` of the study to all 1,000 run Jobs created (parallelism respected: at no
  sampled moment more than maxParallelRuns runs are created and not yet terminal);
* operator writes per run, from the kube-apiserver's own `apiserver_request_total`
  (mutating verbs on the resources only the operator writes: Jobs (not jobs/status),
  ScalingStudies (incl. /status) and ConfigMaps), before vs after — less the TTL
  controller's Job DELETEs and the garbage collector's one PATCH per deleted Job (see
  operator_writes);
* harvest latency: from the moment this script finished a run's pod to the moment the run's
  result appeared in one of the study's results ConfigMaps (watched; ftscale.api.
  results_store — the durable record), p50/p95/max;
* the operator's peak resident memory (VmHWM);
* at the end, from the cluster's final state: every run has exactly one result in the
  ConfigMaps, and the size of the status object.

Last line: `writes_per_run=W harvest_p95_seconds=T operator_rss_mb=M` (goals, issue 15: at
1,000 runs W ≤ 2.5, T ≤ 1, M ≤ 250; at 10,000 runs on 500 nodes T ≤ 2, M ≤ 500, loaded or
not). Environment: FTSCALE_BENCH_KUBECONFIG=path uses an existing cluster instead of starting
one (it must have `--nodes` KWOK GPU nodes).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator"), str(REPO / "trainer_image"), str(REPO / "tests")]

import yaml  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from tqdm import tqdm  # noqa: E402

from cluster.control_plane import LocalControlPlane  # noqa: E402
from cluster.kubelet import HOLD_KEY, STRATEGIC_MERGE_PATCH, terminated_status_patch  # noqa: E402
from ftscale import results as rc  # noqa: E402
from ftscale.api import results_store  # noqa: E402
from ftscale.controller import names  # noqa: E402
from ftscale.spec import crd_path  # noqa: E402
from producers import example_fit_message  # noqa: E402

NAMESPACE = "bench"
LOAD_NAMESPACE = "bench-load"
STUDY = "scale"
DATA_SIZES = [100 * (i + 1) for i in range(25)]
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
# (group, resource, subresource) written by the operator and by nothing else in this cluster.
OPERATOR_RESOURCES = {("batch", "jobs", ""), (names.GROUP, names.PLURAL, ""),
                      (names.GROUP, names.PLURAL, "status"), ("", "configmaps", "")}
FIT_SUMMARY = example_fit_message(STUDY)  # the fit Job's real output (tests/producers.py)


def grid_shape(runs: int) -> tuple[int, int]:
    """(models, seeds) with models × 25 data sizes × seeds = runs (within the CRD's limits)."""
    seeds = 4 if runs <= 1000 else 10
    models, rest = divmod(runs, len(DATA_SIZES) * seeds)
    if rest or not 1 <= models <= 64:
        raise SystemExit(f"--runs must be a multiple of {len(DATA_SIZES) * seeds} up to "
                         f"{64 * len(DATA_SIZES) * seeds}")
    return models, seeds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def apiserver_requests(api: client.ApiClient) -> Counter:
    """apiserver_request_total as {(verb, group, resource, subresource): count}."""
    request = api.param_serialize(method="GET", resource_path="/metrics", auth_settings=["BearerToken"],
                                  header_params={"Accept": "text/plain"})
    resp = api.call_api(*request)
    text = resp.read().decode()
    assert resp.status == 200, f"GET /metrics: {resp.status} {text[:200]}"
    out: Counter = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for s in family.samples:
            if s.name != "apiserver_request_total":
                continue
            key = (s.labels.get("verb"), s.labels.get("group", ""), s.labels.get("resource"),
                   s.labels.get("subresource", ""))
            out[key] += s.value
    return out


def study_manifest(models: int, seeds: int, max_parallel: int) -> dict:
    return {
        "apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": {"name": STUDY},
        "spec": {
            "task": {"name": "toy-en-de"},
            "models": [{"name": f"m{i}", "source": f"toy:m{i}", "parameters": 10_000 * (i + 1), "gpus": 1}
                       for i in range(models)],
            "methods": [{"name": "fmt"}],
            "dataSizes": DATA_SIZES,
            "seeds": list(range(seeds)),
            "execution": {"image": "ftscale/trainer:bench", "maxParallelRuns": max_parallel,
                          "backoffLimit": 0, "ttlSecondsAfterFinished": 600,
                          "labels": {HOLD_KEY: "true"}},
        },
    }


def result_for(pod: dict) -> str:
    labels = pod["metadata"]["labels"]
    data_size = int(labels[names.LABEL_DATA_SIZE])
    return rc.RunResult(study=STUDY, run_id=labels[names.LABEL_RUN], model=labels[names.LABEL_MODEL],
                        method=labels[names.LABEL_METHOD], pet_size=None, data_size=data_size,
                        seed=int(labels[names.LABEL_SEED]), test_loss=1.5 + 100.0 / data_size,
                        best_dev_loss=1.4, model_params=1000, steps=10, wall_seconds=1.0).to_compact_json()


def watch_raw(list_func, *args, stop: threading.Event, on_event, name: str, **kwargs) -> None:
    """Watch as a controller does, until `stop`: objects as plain JSON (the client's model
    deserializer would make this script, not the cluster, the bottleneck), resumed from the
    last resourceVersion after each 30-second window (no replay of every object), listed anew
    only when the API server says the version is gone. on_event(type, object) per event."""
    w = watch.Watch()
    version = None
    while not stop.is_set():
        try:
            extra = {"resource_version": version} if version else {}
            for ev in w.stream(list_func, *args, timeout_seconds=30, deserialize=False, **extra, **kwargs):
                obj = ev["object"]
                if ev["type"] == "ERROR":
                    version = None  # 410 Gone: start again from a fresh list
                    break
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if ev["type"] != "BOOKMARK":
                    on_event(ev["type"], obj)
                if stop.is_set():
                    break
        except Exception as exc:  # noqa: BLE001 - reconnect the watch
            if not stop.is_set():
                print(f"{name} watch: {exc}", file=sys.stderr)
                version = None
                time.sleep(0.5)


class Kubelet:
    """Finishes every run pod that is Running on a node, once, and remembers when."""

    def __init__(self, api: client.ApiClient):
        self.core = client.CoreV1Api(api)
        self.done_at: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(max_workers=8)
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def _finish(self, pod: dict, component: str) -> None:
        message = result_for(pod) if component == names.COMPONENT_RUN else FIT_SUMMARY
        patch = terminated_status_patch(pod, 0, message)
        self.core.patch_namespaced_pod_status(pod["metadata"]["name"], NAMESPACE, patch,
                                              _content_type=STRATEGIC_MERGE_PATCH)
        key = pod["metadata"]["labels"].get(names.LABEL_RUN) or "fit"
        with self.lock:
            self.done_at[key] = time.time()

    def run(self) -> None:
        seen: set[str] = set()

        def on_pod(_type: str, pod: dict) -> None:
            name = pod["metadata"]["name"]
            if name in seen or (pod.get("status") or {}).get("phase") != "Running" \
                    or not pod["spec"].get("nodeName"):
                return
            seen.add(name)
            component = pod["metadata"]["labels"].get(names.LABEL_COMPONENT, "run")
            self.pool.submit(self._finish, pod, component)

        watch_raw(self.core.list_namespaced_pod, NAMESPACE, label_selector=names.LABEL_STUDY,
                  stop=self.stop, on_event=on_pod, name="kubelet")


class StudyWatcher:
    """Keeps the study's newest status (its conditions say when the law is fitted)."""

    def __init__(self, api: client.ApiClient):
        self.custom = client.CustomObjectsApi(api)
        self.status: dict = {}
        self.stop = threading.Event()

    def run(self) -> None:
        def on_study(_type: str, obj: dict) -> None:
            if obj["metadata"]["name"] == STUDY:
                self.status = obj.get("status") or {}

        watch_raw(self.custom.list_namespaced_custom_object, names.GROUP, names.VERSION, NAMESPACE,
                  names.PLURAL, stop=self.stop, on_event=on_study, name="study")


class ResultsWatcher:
    """Records when each run's result first appears in the study's results ConfigMaps."""

    def __init__(self, api: client.ApiClient):
        self.core = client.CoreV1Api(api)
        self.seen_at: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        def on_shard(_type: str, obj: dict) -> None:
            now = time.time()
            for key in (obj.get("data") or {}):
                if key.endswith(results_store.KEY_SUFFIX):
                    self.seen_at.setdefault(key[: -len(results_store.KEY_SUFFIX)], now)

        watch_raw(self.core.list_namespaced_config_map, NAMESPACE,
                  label_selector=results_store.label_selector(STUDY), stop=self.stop,
                  on_event=on_shard, name="results")


class Loader:
    """A second client loading the API server at a fixed rate: paged LISTs of the study's pods
    and PATCHes of a Secret in another namespace, alternately; counts what it sent."""

    def __init__(self, api: client.ApiClient, qps: float):
        self.core = client.CoreV1Api(api)
        self.qps = qps
        self.sent = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": LOAD_NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        try:
            self.core.create_namespaced_secret(LOAD_NAMESPACE, {"metadata": {"name": "load"},
                                                                "data": {"k": base64.b64encode(b"v").decode()}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        period = 1.0 / self.qps
        due = time.monotonic()
        i = 0
        while not self.stop.is_set():
            due += period
            try:
                if i % 2 == 0:
                    # raw bytes: the API server does the work, not this client's deserializer
                    self.core.list_namespaced_pod(NAMESPACE, limit=500, _preload_content=False).read()
                    self.sent["list"] += 1
                else:
                    self.core.patch_namespaced_secret("load", LOAD_NAMESPACE,
                                                      {"metadata": {"annotations": {"n": str(i)}}})
                    self.sent["patch"] += 1
            except Exception as exc:  # noqa: BLE001 - a load generator keeps going
                self.sent["error"] += 1
                if self.sent["error"] < 5:
                    print(f"load: {exc}", file=sys.stderr)
            i += 1
            time.sleep(max(0.0, due - time.monotonic()))


class JobWatcher:
    """Counts the run Jobs that were ever created, and those being deleted right now (a watch,
    not polling LISTs: the benchmark should load the API server as little as it can)."""

    def __init__(self, api: client.ApiClient):
        self.batch = client.BatchV1Api(api)
        self.names: set[str] = set()
        self.terminating: set[str] = set()
        self.stop = threading.Event()

    def _on_job(self, kind: str, job: dict) -> None:
        name = job["metadata"]["name"]
        self.names.add(name)
        if kind == "DELETED":
            self.terminating.discard(name)
        elif job["metadata"].get("deletionTimestamp"):
            self.terminating.add(name)

    def run(self) -> None:
        watch_raw(self.batch.list_namespaced_job, NAMESPACE, label_selector=f"{names.LABEL_COMPONENT}=run",
                  stop=self.stop, on_event=self._on_job, name="job")


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def operator_writes(diff: Counter, terminating: int) -> tuple[Counter, Counter, int]:
    """(writes, reads, gc) by (verb, resource, subresource) on the resources only the operator
    writes, from an apiserver_request_total difference.

    Two writers besides the operator touch Jobs, and the counter does not say who sent a
    request: the TTL controller DELETEs each expired Job with foreground propagation, and the
    garbage collector then PATCHes it once to remove the foregroundDeletion finalizer when its
    pods are gone. So the DELETEs are left out, and so are `gc` Job PATCHes: one per DELETE
    less the Jobs still being deleted (`terminating`, from the Job watch)."""
    writes, reads = Counter(), Counter()
    gc = max(0, int(diff[("DELETE", "batch", "jobs", "")]) - terminating)
    for (verb, group, resource, sub), n in diff.items():
        if (group, resource, sub) not in OPERATOR_RESOURCES:
            continue
        if verb == "POST" and resource == names.PLURAL:
            continue  # the one POST of the study itself is this script's, not the operator's
        if verb == "DELETE" and resource == "jobs":
            continue  # the TTL controller's, once ttlSecondsAfterFinished expires (the operator
            # deletes only Jobs of runs dropped from the grid: none here)
        (writes if verb in WRITE_VERBS else reads)[(verb, resource, sub)] += n
    writes[("PATCH", "jobs", "")] -= gc
    return writes, reads, gc


def latencies_of(recorded: "ResultsWatcher", kubelet: "Kubelet") -> list[float]:
    with kubelet.lock:
        done = dict(kubelet.done_at)
    return sorted(recorded.seen_at[r] - done[r] for r in list(recorded.seen_at) if r in done)


def interim(api, before: Counter, recorded, kubelet, jobs: JobWatcher, pid: int, harvested: int,
            t0: float) -> str:
    """One line of the numbers so far."""
    writes, _, _ = operator_writes(apiserver_requests(api) - before, len(jobs.terminating))
    lat = latencies_of(recorded, kubelet)
    p95 = lat[int(0.95 * (len(lat) - 1))] if lat else float("nan")
    return (f"[{time.time() - t0:.0f} s] {harvested} recorded; so far writes_per_run="
            f"{sum(writes.values()) / max(1, harvested):.2f} harvest_p95_seconds={p95:.2f} "
            f"operator_rss_mb={vm_hwm_mb(pid):.0f} load={os.getloadavg()[0]:.1f}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="The operator at scale on a local control plane (KWOK GPU nodes): writes "
                    "per run, harvest latency, operator memory.")
    parser.add_argument("--runs", type=int, default=1000,
                        help="runs in the study: a multiple of 100 up to 1,000 (4 seeds), of "
                             "250 above (10 seeds); default 1000")
    parser.add_argument("--nodes", type=int, default=32, help="KWOK GPU nodes, 8 GPUs each (default 32)")
    parser.add_argument("--max-parallel", type=int, default=300,
                        help="the study's maxParallelRuns (default 300)")
    parser.add_argument("--cluster-qps", type=int, default=0, metavar="QPS",
                        help="API client rate of the control plane's controller-manager and "
                             "scheduler (default: theirs, 20/50 QPS; large clusters raise it). "
                             "At 10,000 runs the Job controller's 20 pod creations a second, "
                             "not the operator, bound the study's pace")
    parser.add_argument("--load", type=float, default=0.0, metavar="QPS",
                        help="also load the API server with this many requests per second from a "
                             "second client (LISTs and PATCHes, alternately); 0: idle (default)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # `kill` stops the benchmark like Ctrl-C: the operator and the control plane go with it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    models, seeds = grid_shape(args.runs)
    runs_total = models * len(DATA_SIZES) * seeds
    GPU_NODES, MAX_PARALLEL = args.nodes, args.max_parallel  # noqa: N806
    external = os.environ.get("FTSCALE_BENCH_KUBECONFIG")
    plane = None
    finished = False
    if external:
        kubeconfig = external
    else:
        cache = Path(os.environ.get("FTSCALE_CACHE", Path.home() / ".cache" / "ftscale"))
        state = Path(tempfile.mkdtemp(prefix="bench-operator-", dir=cache))
        if args.cluster_qps:
            os.environ["FTSCALE_CLUSTER_CLIENT_QPS"] = str(args.cluster_qps)
        plane = LocalControlPlane(state, gpu_nodes=GPU_NODES, cpu_nodes=0)
        print(f"starting a control plane with {GPU_NODES} KWOK GPU nodes in {state} ...", flush=True)
        kubeconfig = str(plane.start(owner_pid=os.getpid()))
    operator = None
    try:
        api = config.new_client_from_config(config_file=kubeconfig)
        api.configuration.connection_pool_maxsize = 16
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        ext = client.ApiextensionsV1Api(api)
        gpu_nodes = [n for n in core.list_node().items if (n.status.allocatable or {}).get("nvidia.com/gpu")]
        assert len(gpu_nodes) >= GPU_NODES, f"need {GPU_NODES} GPU nodes, the cluster has {len(gpu_nodes)}"
        crd = yaml.safe_load(crd_path().read_text())  # crds/scalingstudy.yaml (or $FTSCALE_CRD)
        try:
            ext.create_custom_resource_definition(crd)
        except ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.time() + 30
        while not any(c.type == "Established" and c.status == "True"
                      for c in ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or ()):
            assert time.time() < deadline, "CRD not Established"
            time.sleep(0.2)
        try:
            core.create_namespace({"metadata": {"name": NAMESPACE}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        deadline = time.time() + 30
        while True:
            try:
                core.read_namespaced_service_account("default", NAMESPACE)
                break
            except ApiException:
                assert time.time() < deadline, "no default ServiceAccount"
                time.sleep(0.2)

        metrics_port, health_port = free_port(), free_port()
        log_path = Path(tempfile.mkstemp(prefix="bench-operator-", suffix=".log")[1])
        env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}",
               "FTSCALE_LOG_FORMAT": "plain"}
        operator = subprocess.Popen(
            [sys.executable, "-m", "ftscale", "operator", "--kubeconfig", kubeconfig, "--namespace", NAMESPACE,
             "--metrics-port", str(metrics_port), "--health-port", str(health_port),
             "--lease-namespace", NAMESPACE, "--identity", "bench"],
            stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2).read()
                break
            except OSError:
                assert operator.poll() is None, f"operator exited: {log_path.read_text()[-2000:]}"
                assert time.time() < deadline, "operator not healthy"
                time.sleep(0.3)
        # wait for leadership (the Lease) so that the clock starts with an acting operator
        deadline = time.time() + 30
        while b'"leader": true' not in urllib.request.urlopen(
                f"http://127.0.0.1:{health_port}/healthz", timeout=2).read():
            assert time.time() < deadline, "operator never became leader"
            time.sleep(0.2)

        kubelet, watcher, jobs = Kubelet(api), StudyWatcher(api), JobWatcher(api)
        recorded = ResultsWatcher(api)
        loader = Loader(config.new_client_from_config(config_file=kubeconfig), args.load) if args.load else None
        workers = [kubelet, watcher, jobs, recorded] + ([loader] if loader else [])
        threads = [threading.Thread(target=x.run, daemon=True) for x in workers]
        for t in threads:
            t.start()
        time.sleep(1.0)
        before = apiserver_requests(api)
        t0 = time.time()
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            names.GROUP, names.VERSION, NAMESPACE, names.PLURAL, study_manifest(models, seeds, MAX_PARALLEL))
        load_avg = []

        all_created_at = None
        max_unfinished = 0
        bar = tqdm(total=runs_total, desc="runs harvested", unit="run")
        while True:
            time.sleep(0.5)
            created = len(jobs.names)
            harvested = len(recorded.seen_at)
            if len(load_avg) < (time.time() - t0) / 30:
                load_avg.append(os.getloadavg()[0])
                if len(load_avg) % 2 == 0:  # every minute: the numbers so far (a long run may be cut)
                    bar.write(interim(api, before, recorded, kubelet, jobs, operator.pid, harvested, t0))
            # runs at once = Jobs created whose pod has not finished yet (this script finishes them)
            with kubelet.lock:
                finished = len(kubelet.done_at)
            max_unfinished = max(max_unfinished, created - finished)
            if all_created_at is None and created >= runs_total:
                all_created_at = time.time()
            bar.update(harvested - bar.n)
            fitted = any(c.get("type") == "Fitted" and c.get("status") == "True"
                         for c in watcher.status.get("conditions") or ())
            if harvested >= runs_total and fitted:
                break
            assert operator.poll() is None, f"operator exited: {log_path.read_text()[-3000:]}"
            assert time.time() - t0 < 1500 * max(1, runs_total / 1000), \
                f"study did not finish: {watcher.status.get('progress')}"
        t_end = time.time()
        bar.close()
        time.sleep(1.0)
        after = apiserver_requests(api)
        terminating = len(jobs.terminating)
        rss = vm_hwm_mb(operator.pid)
        op_metrics = {}
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        for family in text_string_to_metric_families(text):
            for smp in family.samples:
                if smp.name.endswith(("_sum", "_count")) and not smp.labels:
                    op_metrics[smp.name] = smp.value
        for x in workers:
            x.stop.set()
        # From the cluster's final state: one result per run in the ConfigMaps, and the status.
        shards = [api.sanitize_for_serialization(cm) for cm in core.list_namespaced_config_map(
            NAMESPACE, label_selector=results_store.label_selector(STUDY)).items]
        final = results_store.read_results(STUDY, None, shards)
        keys = [k for cm in shards for k in (cm.get("data") or {})]
        study_obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            names.GROUP, names.VERSION, NAMESPACE, names.PLURAL, STUDY)
        status_bytes = len(json.dumps(study_obj.get("status") or {}))

        writes, reads, gc_patches = operator_writes(after - before, terminating)
        total_writes = sum(writes.values())
        latencies = latencies_of(recorded, kubelet)
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print()
        print(f"runs: {runs_total} ({models} models × {len(DATA_SIZES)} data sizes × {seeds} seeds) "
              f"on {len(gpu_nodes)} KWOK GPU nodes, maxParallelRuns {MAX_PARALLEL}"
              + (f", controller-manager/scheduler client QPS {args.cluster_qps}" if args.cluster_qps else ""))
        if loader:
            print(f"load: {args.load:g} requests/s asked of a second client; sent {dict(loader.sent)} "
                  f"in {t_end - t0:.0f} s ({sum(loader.sent.values()) / (t_end - t0):.1f}/s)")
        print(f"machine load (1-min load average, every 30 s): "
              f"{' '.join(f'{x:.1f}' for x in load_avg)} ({os.cpu_count()} CPUs)")
        print(f"apply -> all {runs_total} run Jobs created: {all_created_at - t0:.1f} s "
              f"(most runs at once, i.e. Jobs created whose pod had not finished: {max_unfinished}, "
              f"limit {MAX_PARALLEL})")
        print(f"apply -> every result recorded and the law fitted: {t_end - t0:.1f} s")
        print(f"final state: {len(final.results)} distinct results in {len(shards)} results "
              f"ConfigMaps ({len(keys)} keys; sizes {sorted(final.sizes.values())} bytes), "
              f"status {status_bytes} bytes")
        print("operator writes (from apiserver_request_total):")
        for (verb, resource, sub), n in sorted(writes.items()):
            print(f"  {verb:6} {resource}{'/' + sub if sub else ''}: {int(n)}")
        print(f"  other requests on those resources (GET/LIST/WATCH): {int(sum(reads.values()))}")
        print(f"  not counted: the TTL controller's Job DELETEs and the garbage collector's "
              f"{gc_patches} Job PATCHes removing their foregroundDeletion finalizer")
        print(f"harvest latency (pod finished -> result in a results ConfigMap), {len(latencies)} runs: "
              f"p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s")
        passes = op_metrics.get("ftscale_reconcile_duration_seconds_count", 0)
        if passes:
            print(f"operator: {int(passes)} reconcile passes, mean "
                  f"{op_metrics['ftscale_reconcile_duration_seconds_sum'] / passes * 1000:.0f} ms")
        print(f"operator peak RSS (VmHWM): {rss:.0f} MB; log: {log_path}")
        ok = max_unfinished <= MAX_PARALLEL
        if not ok:
            print(f"PARALLELISM VIOLATED: {max_unfinished} > {MAX_PARALLEL}")
        if len(final.results) != runs_total or len(keys) != runs_total:
            print(f"RESULTS WRONG: {len(final.results)} distinct of {runs_total}, {len(keys)} keys")
            ok = False
        print(f"writes_per_run={total_writes / runs_total:.2f} harvest_p95_seconds={p95:.2f} "
              f"operator_rss_mb={rss:.0f}")
        finished = True
        return 0 if ok else 1
    finally:
        if operator is not None and operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(20)
            except subprocess.TimeoutExpired:
                operator.kill()
        if plane is not None:
            plane.stop()
            if finished:
                import shutil
                shutil.rmtree(plane.state_dir, ignore_errors=True)  # ~200 MB of etcd data and logs
            else:
                print(f"control-plane state and logs kept in {plane.state_dir}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
