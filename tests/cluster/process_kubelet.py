"""A kubelet for ftscale's pods that runs each container as a local process.

KWOK plays the kubelet of the test control plane's fake nodes: it schedules nothing and runs
nothing, it only writes pod statuses. That is enough to test the operator with canned results
(tests/cluster/kubelet.py), but not to see the real trainer and the real fit Job run through
the cluster path. This module fills that gap: it watches ftscale's run and fit pods (label
`ftscale.io/component`) that KWOK was told to leave alone, runs each one's container
`command` + `args` as a local process and reports the exit as the kubelet does
(cluster.kubelet.complete_pod: exit code, reason, termination message).

    from cluster.process_kubelet import ProcessKubelet
    with ProcessKubelet(core_api, namespace="research", max_parallel=2):
        ...  # apply a study; its pods run here

    python -m cluster.process_kubelet --kubeconfig KUBECONFIG [--namespace NS] [--parallel 2]

**Which pods, and how KWOK keeps its hands off.** A pod is run here when it carries the
ftscale component label AND the harness's hold key `ftscale.test/hold` (label or annotation;
tests/cluster/kwok/stages.yaml: KWOK's pod-complete stage skips held pods) and KWOK has made it
Running on one of its nodes. A study opts in with `spec.execution.labels:
{ftscale.test/hold: process}`, which the operator copies onto every run and fit pod. The hold
key was chosen over a node of this process's own because the scheduler would spread pods over
the KWOK nodes anyway (nothing steers a study's pods to one node without changing the study
or tainting the shared nodes), and because KWOK keeps doing the rest of a kubelet's job
unchanged: node heartbeats, the pod's Running status and IP, the removal of a deleted pod.
Pods that are not held stay KWOK's (it completes them at once); pods held for a test that
finishes them itself must not be in the namespaces this kubelet watches, or must use a hold
value outside `hold_values`.

**What a container becomes** (docs/cluster-install.md, "The cluster path without a cluster"):
  * argv = command + args (Kubernetes semantics; an image ENTRYPOINT is not known here, so a
    container without `command` fails with StartError). `python`/`python3` is this
    interpreter; other programs are looked up on PATH (this interpreter's bin folder first).
  * volumes → local folders in the pod's sandbox: emptyDir → a temp folder; configMap → its
    keys (or `items`) read through the API, as files; downwardAPI → the `fieldRef` items
    (metadata.name/namespace/uid, labels, annotations, one key of either) as files;
    persistentVolumeClaim → one folder per claim under `pvc_root`, kept across pods (so a
    retry sees what the first attempt saved). readOnly and sizeLimit are not enforced.
    Other volume types fail the pod with StartError.
  * every string in args, command, env values and workingDir that starts with a mountPath
    (or the terminationMessagePath) is rewritten to the local folder (longest prefix first;
    `--flag=/path` too). Declared containerPorts are remapped to free local ports wherever
    they appear as a flag's value (`--metrics-port 9400`) or an env value, so two trainers can
    serve their metrics side by side.
  * env = the node's environment (`node_env`: PATH, PYTHONPATH, FTSCALE_CACHE — the image's
    contents, here the host's: the code and the toy world — and OMP_NUM_THREADS) overridden by
    the container's `env` (value, fieldRef, configMapKeyRef) and `envFrom` configMapRef; then
    $TERMINATION_MESSAGE_PATH (ftscale.api.outcomes) names the local termination-message file,
    because the process cannot create /dev/termination-log.
  * the termination message: the last 4096 bytes of that file; with
    `terminationMessagePolicy: FallbackToLogsOnError`, when the file is empty and the exit
    code is not 0, the last 80 lines / 2048 bytes of the log instead (the kubelet's numbers).
  * exit code: the process's, 128+N when it died from signal N (what a container runtime
    reports); reason Completed/Error.
  * deletion: when the pod gets a deletionTimestamp or disappears, SIGTERM goes to the
    process group, SIGKILL after the pod's grace period (deletionGracePeriodSeconds, else
    terminationGracePeriodSeconds, else 30 s); the exit is then reported only if the pod
    still exists.
  * at most `max_parallel` processes at once (this project's machines have 2 cores); pods
    beyond that wait, oldest first, while KWOK already shows them Running.
Not imitated: users and securityContext, resource limits, image contents beyond node_env,
probes, init containers, more than one container per pod (the first is run).

Pods are found by listing (every `poll_s`) rather than watching: at a study's scale a list
is cheap, and a relist never misses an event after a watch expires.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

if __package__ in (None, ""):  # run as a script: make `cluster` (tests/cluster) importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cluster.kubelet import HOLD_KEY, MAX_TERMINATION_MESSAGE_BYTES, complete_pod  # noqa: E402

# The one spelling of these facts is the operator's (ftscale.controller.names, ftscale.api).
from ftscale.api.outcomes import TERMINATION_MESSAGE_ENV, TERMINATION_MESSAGE_PATH  # noqa: E402
from ftscale.controller.names import LABEL_COMPONENT  # noqa: E402

# kubelet: pkg/kubelet/container/runtime.go MaxContainerTerminationMessageLogLines / ...Length
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
DEFAULT_GRACE_SECONDS = 30
START_ERROR_EXIT = 128  # what container runtimes report when a container could not start
PYTHON_NAMES = frozenset({"python", "python3"})


class StartError(RuntimeError):
    """The pod's container cannot be started here (an unsupported volume, no command, ...)."""


class NotReadyYet(RuntimeError):
    """Something the pod needs (a ConfigMap) does not exist yet; the kubelet retries later."""


# ---------------------------------------------------------------------------- pure helpers
def hold_value(pod: Mapping[str, Any], hold_key: str = HOLD_KEY) -> str | None:
    meta = pod.get("metadata") or {}
    for where in ("labels", "annotations"):
        value = (meta.get(where) or {}).get(hold_key)
        if value is not None:
            return value
    return None


def is_ours(pod: Mapping[str, Any], hold_key: str = HOLD_KEY,
            hold_values: Iterable[str] | None = None) -> bool:
    """An ftscale pod, held from KWOK, Running on a node, not being deleted: run it here."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    if LABEL_COMPONENT not in (meta.get("labels") or {}) or meta.get("deletionTimestamp"):
        return False
    held = hold_value(pod, hold_key)
    if held is None or (hold_values is not None and held not in set(hold_values)):
        return False
    return bool(spec.get("nodeName")) and status.get("phase") == "Running"


def grace_seconds(pod: Mapping[str, Any]) -> float:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    for value in (meta.get("deletionGracePeriodSeconds"), spec.get("terminationGracePeriodSeconds")):
        if value is not None:
            return float(value)
    return float(DEFAULT_GRACE_SECONDS)


_FIELD_ITEM = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API fieldRef of the pod (the subset run and fit pods and tests use)."""
    meta, spec, status = (pod.get(k) or {} for k in ("metadata", "spec", "status"))
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"),
              "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP")}
    if path in simple:
        return simple[path] or ""
    if path in ("metadata.labels", "metadata.annotations"):
        mapping = meta.get(path.split(".")[1]) or {}
        # The downward API's format for a whole map: key="value" lines, sorted.
        return "".join(f'{k}="{_go_quote(v)}"\n' for k, v in sorted(mapping.items()))
    match = _FIELD_ITEM.match(path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise StartError(f"downward API field {path!r} is not supported by the process kubelet")


def _go_quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def mount_map(container: Mapping[str, Any], volume_dirs: Mapping[str, Path]) -> list[tuple[str, str]]:
    """(mountPath, local folder) for each volumeMount, longest mountPath first."""
    out = []
    for mount in container.get("volumeMounts") or ():
        name = mount["name"]
        if name not in volume_dirs:
            raise StartError(f"volumeMount {name!r} names no volume of the pod")
        local = Path(volume_dirs[name])
        if mount.get("subPath"):
            local = local / mount["subPath"]
            local.mkdir(parents=True, exist_ok=True)
        out.append((mount["mountPath"].rstrip("/") or "/", str(local)))
    return sorted(out, key=lambda pair: len(pair[0]), reverse=True)


def rewrite_path(value: str, prefixes: Sequence[tuple[str, str]]) -> str:
    """`value` with a leading container path (exactly, or followed by "/") replaced by its
    local folder; `--flag=/path` rewrites the part after "="."""
    head, sep, tail = "", "", value
    if value.startswith("-") and "=" in value:
        head, sep, tail = value.partition("=")
    for container_path, local in prefixes:
        if tail == container_path or tail.startswith(container_path.rstrip("/") + "/"):
            return head + sep + local + tail[len(container_path):]
    return value


def remap_ports(argv: Sequence[str], env: Mapping[str, str],
                ports: Mapping[int, int]) -> tuple[list[str], dict[str, str]]:
    """Replace declared container ports by local ones where they are a flag's value
    (`--port 9400`, `--port=9400`) or a whole env value."""
    text = {str(k): str(v) for k, v in ports.items()}
    out: list[str] = []
    for i, arg in enumerate(argv):
        previous = argv[i - 1] if i > 0 else ""
        if arg in text and previous.startswith("-") and "=" not in previous:
            arg = text[arg]
        elif arg.startswith("-") and "=" in arg:
            flag, _, value = arg.partition("=")
            if value in text:
                arg = f"{flag}={text[value]}"
        out.append(arg)
    return out, {k: text.get(v, v) for k, v in env.items()}


def termination_message(file_bytes: bytes, log_bytes: bytes, exit_code: int,
                        policy: str | None) -> str:
    """What the kubelet puts into state.terminated.message: the file's last 4096 bytes; with
    FallbackToLogsOnError, an empty file and a failed exit, the log's last 80 lines capped at
    2048 bytes."""
    if file_bytes:
        return file_bytes[-MAX_TERMINATION_MESSAGE_BYTES:].decode("utf-8", errors="replace")
    if policy == "FallbackToLogsOnError" and exit_code != 0:
        lines = log_bytes.splitlines(keepends=True)[-FALLBACK_LOG_LINES:]
        return b"".join(lines)[-FALLBACK_LOG_BYTES:].decode("utf-8", errors="replace")
    return ""


def exit_code_of(returncode: int) -> int:
    """Popen's returncode → a container's exit code (-N, killed by signal N → 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


def resolve_argv(argv: Sequence[str], path: str, python: str = sys.executable) -> list[str]:
    if not argv:
        raise StartError("the container has no command: the process kubelet knows no image "
                         "ENTRYPOINT, so containers must name their command")
    first = argv[0]
    if first in PYTHON_NAMES:
        return [python, *argv[1:]]
    if "/" not in first:
        found = shutil.which(first, path=path)
        if not found:
            raise StartError(f"executable {first!r} not found on the node's PATH {path}")
        first = found
    return [first, *argv[1:]]


def default_node_env() -> dict[str, str]:
    """What the trainer image provides, taken from this host: the interpreter's bin folder on
    PATH, the code (PYTHONPATH), the cache holding the toy world (FTSCALE_CACHE) and one
    thread per process (the machine's cores are shared by the parallel processes)."""
    cache = os.environ.get("FTSCALE_CACHE") or str(Path.home() / ".cache" / "ftscale")
    env = {"PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                    os.environ.get("PATH", "/usr/bin:/bin")]),
           "FTSCALE_CACHE": cache, "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    if os.environ.get("PYTHONPATH"):  # absolute: processes start in their sandbox
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in
                                            os.environ["PYTHONPATH"].split(os.pathsep) if p)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- the kubelet
@dataclasses.dataclass
class RunningPod:
    uid: str
    namespace: str
    name: str
    component: str
    pod: dict[str, Any]  # last seen JSON (kept after the pod object is gone)
    proc: subprocess.Popen
    sandbox: Path
    log_path: Path
    message_path: Path
    policy: str | None
    started: float
    kill_at: float | None = None  # set once SIGTERM was sent (deletion, shutdown)


@dataclasses.dataclass(frozen=True)
class FinishedPod:
    namespace: str
    name: str
    component: str
    exit_code: int
    message: str
    seconds: float
    reported: bool  # the exit went to pods/status (False: the pod was deleted first)
    log_tail: str


class ProcessKubelet:
    """Runs held ftscale pods as local processes. Thread-safe `start()`/`stop()`; a context
    manager. `finished` lists every pod that ended, in order."""

    def __init__(self, core_api: Any, namespace: str | None = None, *,
                 workdir: str | Path | None = None, pvc_root: str | Path | None = None,
                 max_parallel: int = 2, node_env: Mapping[str, str] | None = None,
                 hold_key: str = HOLD_KEY, hold_values: Iterable[str] | None = None,
                 poll_s: float = 0.5, keep_sandboxes: bool = False,
                 log: Callable[[str], None] | None = None):
        self.core_api = core_api
        self.namespace = namespace
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="ftscale-process-kubelet-"))
        self.pvc_root = Path(pvc_root) if pvc_root else self.workdir / "pvcs"
        self.max_parallel = max(1, int(max_parallel))
        self.node_env = dict(default_node_env() if node_env is None else node_env)
        self.hold_key = hold_key
        self.hold_values = None if hold_values is None else frozenset(hold_values)
        self.poll_s = poll_s
        self.keep_sandboxes = keep_sandboxes
        self.log = log or (lambda line: print(f"[process-kubelet] {line}", file=sys.stderr, flush=True))
        self.running: dict[str, RunningPod] = {}
        self.finished: list[FinishedPod] = []
        self._done: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # loop errors (API hiccups); logged, and kept for tests

    # ---- lifecycle
    def start(self) -> "ProcessKubelet":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self.run_forever, name="process-kubelet", daemon=True)
        self._thread.start()
        return self

    def stop(self, grace_s: float = 10.0) -> None:
        """Stop the loop, then SIGTERM every process and SIGKILL what is left after grace_s.
        Pods stay as they are (a node that went away)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for run in list(self.running.values()):
            self._terminate(run, grace_s)
        deadline = time.monotonic() + grace_s
        for run in list(self.running.values()):
            try:
                run.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(run.proc, signal.SIGKILL)
                run.proc.wait(10)
            self.running.pop(run.uid, None)
        if self._own_workdir and not self.keep_sandboxes:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ProcessKubelet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except Exception as exc:  # noqa: BLE001 — an API hiccup must not end the node
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self.log(f"sync failed ({type(exc).__name__}: {exc}); retrying")
            self._stop.wait(self.poll_s)

    # ---- one pass
    def _list(self) -> list[dict[str, Any]]:
        api = self.core_api
        if self.namespace:
            pods = api.list_namespaced_pod(self.namespace, label_selector=LABEL_COMPONENT)
        else:
            pods = api.list_pod_for_all_namespaces(label_selector=LABEL_COMPONENT)
        return api.api_client.sanitize_for_serialization(pods).get("items") or []

    def sync_once(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self._list()}
        now = time.monotonic()
        for uid, run in list(self.running.items()):
            pod = pods.get(uid)
            if pod is not None:
                run.pod = pod
            if run.kill_at is None and (pod is None or pod["metadata"].get("deletionTimestamp")):
                self._terminate(run, grace_seconds(run.pod))
            if run.kill_at is not None and now >= run.kill_at and run.proc.poll() is None:
                self.log(f"{run.namespace}/{run.name}: grace period over, SIGKILL")
                _signal_group(run.proc, signal.SIGKILL)
                run.kill_at = float("inf")
            if run.proc.poll() is not None:
                self._finish(run, deleted=pod is None)
        waiting = sorted((p for uid, p in pods.items() if uid not in self._done
                          and uid not in self.running and is_ours(p, self.hold_key, self.hold_values)),
                         key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
        for pod in waiting:
            if len(self.running) >= self.max_parallel:
                break
            self._start(pod)

    # ---- starting a pod
    def _start(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        uid, ns, name = meta["uid"], meta["namespace"], meta["name"]
        component = (meta.get("labels") or {}).get(LABEL_COMPONENT, "")
        sandbox = self.workdir / "pods" / ns / f"{name}-{uid[:8]}"
        try:
            container, argv, env, cwd, message_path = self._prepare(pod, sandbox)
        except NotReadyYet as exc:
            self.log(f"{ns}/{name}: waiting ({exc})")
            return
        except StartError as exc:
            self._done.add(uid)
            self.log(f"{ns}/{name}: cannot start: {exc}")
            self._report(pod, START_ERROR_EXIT, f"process kubelet: {exc}", reason="StartError")
            self.finished.append(FinishedPod(ns, name, component, START_ERROR_EXIT, str(exc), 0.0, True, ""))
            return
        log_path = sandbox / "container.log"
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.running[uid] = RunningPod(uid, ns, name, component, pod, proc, sandbox, log_path,
                                       message_path, container.get("terminationMessagePolicy"),
                                       time.monotonic())
        self.log(f"{ns}/{name}: started pid {proc.pid}: {shlex.join(argv)[:300]}")

    def _prepare(self, pod: dict[str, Any], sandbox: Path):
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            raise StartError("the pod has no containers")
        container = containers[0]
        if sandbox.exists():
            shutil.rmtree(sandbox)
        (sandbox / "volumes").mkdir(parents=True)
        volume_dirs = {v["name"]: self._volume(pod, v, sandbox / "volumes" / v["name"])
                       for v in spec.get("volumes") or ()}
        message_path = sandbox / "termination-log"
        message_path.touch()
        prefixes = mount_map(container, volume_dirs)
        prefixes.append((container.get("terminationMessagePath") or TERMINATION_MESSAGE_PATH,
                         str(message_path)))
        own: dict[str, str] = {}  # the container's env; the node's is never rewritten
        for source in container.get("envFrom") or ():
            if "configMapRef" in source:
                data = self._configmap(pod, source["configMapRef"]) or {}
                own.update({(source.get("prefix") or "") + k: v for k, v in data.items()})
            else:
                raise StartError(f"envFrom {sorted(source)} is not supported")
        for var in container.get("env") or ():
            own[var["name"]] = self._env_value(pod, var)
        env = {**self.node_env, **{k: rewrite_path(v, prefixes) for k, v in own.items()}}
        env[TERMINATION_MESSAGE_ENV] = str(message_path)
        argv = [rewrite_path(a, prefixes) for a in
                list(container.get("command") or ()) + list(container.get("args") or ())]
        ports = {int(p["containerPort"]): free_port() for p in container.get("ports") or ()}
        argv, env = remap_ports(argv, env, ports)
        argv = resolve_argv(argv, env.get("PATH", ""))
        cwd = rewrite_path(container["workingDir"], prefixes) if container.get("workingDir") else str(sandbox)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        return container, argv, env, cwd, message_path

    def _volume(self, pod: dict[str, Any], volume: Mapping[str, Any], local: Path) -> Path:
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            path = self.pvc_root / pod["metadata"]["namespace"] / claim
            path.mkdir(parents=True, exist_ok=True)
            return path
        local.mkdir(parents=True, exist_ok=True)
        if "emptyDir" in volume:
            return local
        if "configMap" in volume:
            source = volume["configMap"]
            data = self._configmap(pod, source, with_binary=True)
            if data is not None:
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        if source.get("optional"):
                            continue
                        raise NotReadyYet(f"ConfigMap {source['name']} has no key {item['key']!r}")
                    _write(local / item["path"], data[item["key"]])
            return local
        if "downwardAPI" in volume:
            for item in volume["downwardAPI"].get("items") or ():
                if "fieldRef" not in item:
                    raise StartError(f"downwardAPI item {item.get('path')!r}: only fieldRef is supported")
                _write(local / item["path"], field_value(pod, item["fieldRef"]["fieldPath"]))
            return local
        kind = next((k for k in volume if k != "name"), "?")
        raise StartError(f"volume {volume['name']!r} of type {kind} is not supported "
                         "(emptyDir, configMap, downwardAPI and persistentVolumeClaim are)")

    def _configmap(self, pod: dict[str, Any], ref: Mapping[str, Any],
                   with_binary: bool = False) -> dict[str, str | bytes] | None:
        """The ConfigMap's data; with_binary (volumes, as a kubelet does): its binaryData keys
        too, decoded to bytes."""
        import base64

        from kubernetes.client.rest import ApiException

        try:
            cm = self.core_api.read_namespaced_config_map(ref["name"], pod["metadata"]["namespace"])
        except ApiException as exc:
            if exc.status != 404:
                raise
            if ref.get("optional"):
                return None
            raise NotReadyYet(f"ConfigMap {ref['name']} not found") from None
        data: dict[str, str | bytes] = dict(cm.data or {})
        if with_binary:
            data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
        return data

    def _env_value(self, pod: dict[str, Any], var: Mapping[str, Any]) -> str:
        if "valueFrom" not in var:
            return str(var.get("value", ""))
        source = var["valueFrom"]
        if "fieldRef" in source:
            return field_value(pod, source["fieldRef"]["fieldPath"])
        if "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            data = self._configmap(pod, ref) or {}
            if ref["key"] not in data and not ref.get("optional"):
                raise NotReadyYet(f"ConfigMap {ref['name']} has no key {ref['key']!r}")
            return data.get(ref["key"], "")
        raise StartError(f"env {var['name']}: valueFrom {sorted(source)} is not supported")

    # ---- ending a pod
    def _terminate(self, run: RunningPod, grace: float) -> None:
        if run.kill_at is not None or run.proc.poll() is not None:
            return
        self.log(f"{run.namespace}/{run.name}: pod deleted, SIGTERM (grace {grace:g}s)")
        _signal_group(run.proc, signal.SIGTERM)
        run.kill_at = time.monotonic() + grace

    def _finish(self, run: RunningPod, deleted: bool) -> None:
        self.running.pop(run.uid, None)
        self._done.add(run.uid)
        code = exit_code_of(run.proc.returncode)
        log_bytes = run.log_path.read_bytes() if run.log_path.exists() else b""
        file_bytes = run.message_path.read_bytes() if run.message_path.exists() else b""
        message = termination_message(file_bytes, log_bytes, code, run.policy)
        reported = False
        if not deleted:
            reported = self._report(run.pod, code, message)
        seconds = time.monotonic() - run.started
        tail = log_bytes[-2000:].decode("utf-8", errors="replace")
        self.finished.append(FinishedPod(run.namespace, run.name, run.component, code, message,
                                         seconds, reported, tail))
        self.log(f"{run.namespace}/{run.name}: exited {code} after {seconds:.1f}s"
                 + ("" if reported else " (pod gone: not reported)"))
        if not self.keep_sandboxes and code == 0:
            shutil.rmtree(run.sandbox, ignore_errors=True)

    def _report(self, pod: dict[str, Any], code: int, message: str, reason: str | None = None) -> bool:
        from kubernetes.client.rest import ApiException

        meta = pod["metadata"]
        try:
            complete_pod(self.core_api, (meta["namespace"], meta["name"]), exit_code=code,
                         message=message, reason=reason, wait_running_s=5)
            return True
        except ApiException as exc:
            if exc.status in (404, 409, 422):
                return False
            raise
        except (TimeoutError, ValueError) as exc:
            self.log(f"{meta['namespace']}/{meta['name']}: exit {code} not reported: {exc}")
            return False


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # start_new_session: the process leads its own group
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cluster.process_kubelet",
        description="Run held ftscale pods (label ftscale.io/component + ftscale.test/hold) of "
                    "a KWOK cluster as local processes until interrupted.")
    parser.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"),
                        help="admin kubeconfig (default $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", help="only this namespace (default: all)")
    parser.add_argument("--parallel", type=int, default=2, help="processes at once (default 2)")
    parser.add_argument("--workdir", help="sandboxes folder (default: a temp folder, removed at exit)")
    parser.add_argument("--pvc-root", help="folder of the PVC folders (default WORKDIR/pvcs)")
    parser.add_argument("--hold-value", action="append", dest="hold_values",
                        help="only pods whose hold label/annotation has this value (repeatable)")
    parser.add_argument("--keep", action="store_true", help="keep every pod's sandbox and log")
    args = parser.parse_args(argv)
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=args.kubeconfig))
    kubelet = ProcessKubelet(api, args.namespace, workdir=args.workdir, pvc_root=args.pvc_root,
                             max_parallel=args.parallel, hold_values=args.hold_values,
                             keep_sandboxes=args.keep)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    kubelet.log(f"running held ftscale pods of {args.namespace or 'all namespaces'}, "
                f"{kubelet.max_parallel} at a time, sandboxes in {kubelet.workdir}")
    kubelet.start()
    stop.wait()
    kubelet.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
