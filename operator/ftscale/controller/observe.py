"""Compact, immutable views of the Jobs and Pods the operator owns.

The watch caches (kopf indices) keep these instead of whole objects: a 1,000-run study then
costs a few hundred kilobytes of operator memory, not the megabytes of full Job/Pod bodies.
Functions here take raw API dicts (as watch events deliver them) and never fail on missing
fields: a half-written object yields a view with None in the missing places.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping, NamedTuple

from ftscale.controller import names


def parse_time(value: str | None) -> float | None:
    """RFC 3339 timestamp (as the API writes it) → Unix seconds; None stays None."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except ValueError:
        return None


def format_time(ts: float) -> str:
    """Unix seconds → RFC 3339 with a Z, second precision (the API's own format)."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Workload(NamedTuple):
    """What a pod runs: its main container's name, image, command and args, and a digest of
    its run-config annotation. A pod counts as its Job's only when this matches the Job's
    template: the Job controller adopts any orphan pod whose labels match its selector, so
    anyone who may create pods in the namespace could otherwise slip a forged result in
    (found by `make bench-chaos`)."""

    container: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    config_digest: str | None


def workload(annotations: Mapping[str, Any] | None, pod_spec: Mapping[str, Any] | None) -> Workload | None:
    """The Workload of a pod (or a Job's pod template); None without a known main container."""
    for c in (pod_spec or {}).get("containers") or ():
        if c.get("name") in (names.RUN_CONTAINER, names.FIT_CONTAINER, names.PREFETCH_CONTAINER):
            config = (annotations or {}).get(names.ANNOTATION_RUN_CONFIG)
            return Workload(c["name"], str(c.get("image") or ""), tuple(c.get("command") or ()),
                            tuple(c.get("args") or ()),
                            None if config is None else hashlib.sha256(config.encode()).hexdigest()[:16])
    return None


def same_workload(template: Workload | None, pod: Workload | None) -> bool:
    """Whether `pod` runs what the Job's `template` says. An image the template names by tag
    may run pinned by digest (`repo@sha256:…`, as image-policy webhooks rewrite it); nothing
    else may differ. Without a known template (None) every pod counts."""
    if template is None:
        return True
    if pod is None:
        return False
    if pod._replace(image=template.image) != template:
        return False
    if pod.image == template.image:
        return True
    repo = template.image.split("@")[0]
    if ":" in repo.rsplit("/", 1)[-1]:
        repo = repo.rsplit(":", 1)[0]
    return pod.image.startswith(repo + "@sha256:")


@dataclass(frozen=True)
class JobView:
    name: str
    component: str  # names.COMPONENT_RUN or COMPONENT_FIT
    run_id: str | None  # the run id label (run Jobs only)
    suspended: bool  # spec.suspend (Kueue admission pending): reported as Queued
    active: int
    succeeded: int
    failed: int
    # "Complete" or "Failed" once the Job controller has decided, else None
    finished: str | None
    finished_reason: str | None  # reason of the Failed condition (BackoffLimitExceeded, ...)
    finished_message: str | None
    finished_at: float | None  # Unix seconds of that condition
    ttl: int | None  # spec.ttlSecondsAfterFinished: set by the operator only after harvest
    deleting: bool  # metadata.deletionTimestamp set
    fit_digest: str | None  # fit Jobs: the input digest annotation
    created_at: float | None
    uid: str | None = None
    owner_uid: str | None = None  # the controller owner's uid: the study's, for our Jobs
    workload: Workload | None = None  # what its pod template runs (None: template unknown)

    @property
    def terminal(self) -> bool:
        return self.finished is not None


@dataclass(frozen=True)
class PodView:
    name: str
    job: str | None  # the Job controller's job-name label
    run_id: str | None
    phase: str | None  # Pending, Running, Succeeded, Failed, Unknown
    exit_code: int | None  # of the main container, once terminated
    reason: str | None  # container termination reason (OOMKilled, Error, Completed, ...)
    message: str | None  # the termination message (the result JSON, or log tail on error)
    finished_at: float | None
    disrupted: bool  # DisruptionTarget condition True (preempted/evicted): not the run's fault
    deleting: bool
    owner_uid: str | None = None  # the controller owner's uid: its Job's
    # Why the pod cannot start, when it says: a waiting container's reason and message
    # (ImagePullBackOff, ...) or PodScheduled=False (Unschedulable: "0/32 nodes are available ...")
    blocked: str | None = None
    workload: Workload | None = None  # what the pod runs


def _finished_condition(status: Mapping[str, Any]) -> tuple[str | None, str | None, str | None, float | None]:
    for cond in status.get("conditions") or ():
        if cond.get("status") != "True":
            continue
        kind = cond.get("type")
        if kind in ("Complete", "Failed"):
            return (kind, cond.get("reason"), cond.get("message"),
                    parse_time(cond.get("lastTransitionTime")))
    return None, None, None, None


def job_view(body: Mapping[str, Any]) -> JobView:
    """A Job (raw dict) → JobView. Only the final Complete/Failed conditions count as finished
    (not SuccessCriteriaMet/FailureTarget, which precede them while pods are still stopping)."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    finished, reason, message, at = _finished_condition(status)
    if finished == "Complete" and at is None:
        at = parse_time(status.get("completionTime"))
    return JobView(
        name=meta.get("name", ""),
        component=labels.get(names.LABEL_COMPONENT, names.COMPONENT_RUN),
        run_id=labels.get(names.LABEL_RUN),
        suspended=bool(spec.get("suspend")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        finished=finished,
        finished_reason=reason,
        finished_message=message,
        finished_at=at,
        ttl=spec.get("ttlSecondsAfterFinished"),
        deleting=bool(meta.get("deletionTimestamp")),
        fit_digest=annotations.get(names.ANNOTATION_FIT_DIGEST),
        created_at=parse_time(meta.get("creationTimestamp")),
        uid=meta.get("uid"),
        owner_uid=controller_uid(meta),
        workload=workload(((spec.get("template") or {}).get("metadata") or {}).get("annotations"),
                          (spec.get("template") or {}).get("spec")),
    )


def controller_uid(meta: Mapping[str, Any]) -> str | None:
    """The uid of an object's controller owner (ownerReferences with controller: true)."""
    for ref in meta.get("ownerReferences") or ():
        if ref.get("controller"):
            return ref.get("uid")
    return None


def pod_view(body: Mapping[str, Any], container: str | None = None) -> PodView:
    """A Pod (raw dict) → PodView of its main container (the named one, else the first)."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    status = body.get("status") or {}
    statuses = status.get("containerStatuses") or []
    chosen = None
    for cs in statuses:
        if container is None or cs.get("name") in (container, names.RUN_CONTAINER, names.FIT_CONTAINER):
            chosen = cs
            break
    terminated = ((chosen or {}).get("state") or {}).get("terminated") or {}
    if not terminated:
        # A restarted container keeps its last termination here (restartPolicy Never: rare).
        terminated = ((chosen or {}).get("lastState") or {}).get("terminated") or {}
    disrupted = any(c.get("type") == "DisruptionTarget" and c.get("status") == "True"
                    for c in status.get("conditions") or ())
    exit_code = terminated.get("exitCode")
    return PodView(
        name=meta.get("name", ""),
        job=labels.get("batch.kubernetes.io/job-name") or labels.get("job-name"),
        run_id=labels.get(names.LABEL_RUN),
        phase=status.get("phase"),
        exit_code=int(exit_code) if exit_code is not None else None,
        reason=terminated.get("reason") or (status.get("reason") if status.get("phase") == "Failed" else None),
        message=terminated.get("message"),
        finished_at=parse_time(terminated.get("finishedAt")),
        disrupted=disrupted,
        deleting=bool(meta.get("deletionTimestamp")),
        owner_uid=controller_uid(meta),
        blocked=_blocked(chosen, status),
        workload=workload(meta.get("annotations"), body.get("spec")),
    )


# Waiting reasons that will not clear by themselves (the kubelet keeps retrying, nothing
# changes until someone fixes the image, the secret or the config).
BLOCKING_WAIT_REASONS = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName",
                         "CreateContainerConfigError", "CreateContainerError")


def _blocked(container_status: Mapping[str, Any] | None, status: Mapping[str, Any]) -> str | None:
    waiting = ((container_status or {}).get("state") or {}).get("waiting") or {}
    if waiting.get("reason") in BLOCKING_WAIT_REASONS:
        return f"{waiting['reason']}: {(waiting.get('message') or '')[:300]}".rstrip(": ")
    for c in status.get("conditions") or ():
        if c.get("type") == "PodScheduled" and c.get("status") == "False" \
                and c.get("reason") == "Unschedulable":
            return f"Unschedulable: {(c.get('message') or '')[:300]}".rstrip(": ")
    return None
