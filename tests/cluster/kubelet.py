"""Act as the kubelet of a pod: finish it with a chosen exit code and termination message.

KWOK runs pods but writes no termination message, and the operator's result harvest reads
exactly that field. A test therefore holds a run pod (label or annotation `ftscale.test/hold`,
see tests/cluster/kwok/stages.yaml: KWOK starts it and leaves it Running) and then finishes it
here, through the pods/status subresource, the same way the kubelet reports a container exit:

    from cluster.kubelet import complete_pod
    pod = complete_pod(core_api, pod, exit_code=0, message=result.compact_json())

What the kubelet does and this helper copies:
  * the message is the LAST 4096 bytes of what the container wrote to its termination-message
    file (kubelet: tail.ReadAtMost(path, MaxContainerTerminationMessageLength));
  * terminated.reason is "Completed" for exit 0 and "Error" otherwise unless the runtime says
    more (pass reason="OOMKilled", for instance);
  * the pod phase becomes Succeeded when every container exited 0, else Failed (restartPolicy
    Never — what a Job with podFailurePolicy requires); Ready/ContainersReady turn False with
    reason PodCompleted;
  * the status is sent as a strategic merge patch to pods/status.

Extra pod conditions (e.g. DisruptionTarget, to imitate a preemption) can be passed in.
"""
from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable, Iterable

# kubelet: pkg/kubelet/container/runtime.go MaxContainerTerminationMessageLength
MAX_TERMINATION_MESSAGE_BYTES = 4096
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
HOLD_KEY = "ftscale.test/hold"
"""Pod label or annotation that makes the harness's KWOK stages leave a Job pod Running."""


class PodNotRunning(TimeoutError):
    """The pod never got Running on a node in time (unschedulable? KWOK not managing the node?)."""


def kubelet_termination_message(raw: str | bytes) -> str:
    """What the kubelet would report for a termination-message file holding `raw`.

    Keeps the last 4096 bytes (UTF-8), decoding a character cut in half as U+FFFD, as the
    apiserver's JSON encoding of the kubelet's Go string does.
    """
    data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    return data[-MAX_TERMINATION_MESSAGE_BYTES:].decode("utf-8", errors="replace")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def terminated_status_patch(
    pod: dict[str, Any],
    exit_code: int,
    message: str | bytes = "",
    reason: str | None = None,
    *,
    container: str | None = None,
    extra_conditions: Iterable[dict[str, Any]] = (),
    now: str | None = None,
) -> dict[str, Any]:
    """The pods/status patch a kubelet would send when the pod's containers have exited.

    pod: the pod as JSON (camelCase, as the API returns it).
    container: the container that exits with exit_code/message; the others exit 0 quietly.
        Default: every container exits with exit_code/message (single-container pods).
    Raises ValueError for an unknown container name or a failing exit with a restartPolicy
    other than Never (the kubelet would restart the container instead of finishing the pod).
    """
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers", [])]
    if not names:
        raise ValueError("pod has no containers")
    if container is not None and container not in names:
        raise ValueError(f"pod has no container {container!r}; it has {names}")
    restart = spec.get("restartPolicy", "Always")
    if exit_code != 0 and restart != "Never":
        raise ValueError(
            f"restartPolicy {restart!r} makes the kubelet restart a failed container instead of"
            " failing the pod; use restartPolicy Never (Jobs with podFailurePolicy require it)"
        )
    stamp = now or _now()
    status = pod.get("status") or {}
    previous = {s.get("name"): s for s in status.get("containerStatuses") or []}
    images = {c["name"]: c.get("image", "") for c in spec.get("containers", [])}
    statuses = []
    failed = False
    for name in names:
        chosen = container is None or name == container
        code = exit_code if chosen else 0
        failed = failed or code != 0
        old = previous.get(name, {})
        started_at = ((old.get("state") or {}).get("running") or {}).get("startedAt") or stamp
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": (reason if chosen and reason else ("Completed" if code == 0 else "Error")),
            "startedAt": started_at,
            "finishedAt": stamp,
        }
        text = kubelet_termination_message(message) if chosen else ""
        if text:
            terminated["message"] = text
        if old.get("containerID"):
            terminated["containerID"] = old["containerID"]
        statuses.append(
            {
                "name": name,
                "image": old.get("image") or images[name],
                "imageID": old.get("imageID", ""),
                "ready": False,
                "started": False,
                "restartCount": old.get("restartCount", 0),
                "state": {"terminated": terminated},
            }
        )
    conditions = [
        {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp},
        {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": stamp},
        {"type": "PodReadyToStartContainers", "status": "False", "lastTransitionTime": stamp},
    ]
    for extra in extra_conditions:
        conditions = [c for c in conditions if c["type"] != extra["type"]]
        conditions.append({"lastTransitionTime": stamp, **extra})
    return {
        "status": {
            "phase": "Failed" if failed else "Succeeded",
            "containerStatuses": statuses,
            "conditions": conditions,
        }
    }


def _pod_ref(pod: Any) -> tuple[str, str]:
    """(namespace, name) of a V1Pod, a pod dict, or a (namespace, name) tuple."""
    if isinstance(pod, tuple):
        return pod
    if isinstance(pod, dict):
        return pod["metadata"]["namespace"], pod["metadata"]["name"]
    return pod.metadata.namespace, pod.metadata.name


def wait_for_pod(
    core_api: Any,
    pod: Any,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 60.0,
    what: str = "condition",
) -> dict[str, Any]:
    """Poll a pod until predicate(pod_json) holds; return that pod as JSON.

    Raises TimeoutError naming `what` and the pod's last phase.
    """
    namespace, name = _pod_ref(pod)
    deadline = time.monotonic() + timeout
    last: dict[str, Any] = {}
    while True:
        obj = core_api.read_namespaced_pod(name=name, namespace=namespace)
        last = core_api.api_client.sanitize_for_serialization(obj)
        if predicate(last):
            return last
        if time.monotonic() > deadline:
            phase = (last.get("status") or {}).get("phase")
            raise TimeoutError(f"pod {namespace}/{name}: no {what} after {timeout:.0f}s (phase {phase})")
        time.sleep(0.2)


def _running_on_node(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("nodeName")) and (pod.get("status") or {}).get("phase") == "Running"


def complete_pod(
    core_api: Any,
    pod: Any,
    exit_code: int = 0,
    message: str | bytes = "",
    reason: str | None = None,
    *,
    container: str | None = None,
    extra_conditions: Iterable[dict[str, Any]] = (),
    wait_running_s: float = 60.0,
) -> Any:
    """Finish a Running pod as its kubelet would; return the updated pod (V1Pod).

    core_api: kubernetes.client.CoreV1Api. pod: V1Pod, pod JSON dict or (namespace, name).
    Waits up to wait_running_s for the pod to be Running on a node first (a kubelet only
    reports containers it ran); raises PodNotRunning otherwise. The pod should carry the
    `ftscale.test/hold` label or annotation, or KWOK may complete it first.
    """
    namespace, name = _pod_ref(pod)
    try:
        current = wait_for_pod(core_api, (namespace, name), _running_on_node, wait_running_s, "Running phase on a node")
    except TimeoutError as exc:
        raise PodNotRunning(str(exc)) from exc
    patch = terminated_status_patch(
        current, exit_code, message, reason, container=container, extra_conditions=extra_conditions
    )
    return core_api.patch_namespaced_pod_status(
        name=name, namespace=namespace, body=patch, _content_type=STRATEGIC_MERGE_PATCH
    )
