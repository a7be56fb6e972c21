"""Manifests the operator creates: run Jobs, the fit Job, the results ConfigMap. Pure.

Security posture of every pod (run and fit): non-root, read-only root filesystem, all
capabilities dropped, RuntimeDefault seccomp, no service-account token (runs need no API
access: they report through the termination message). Writable places are emptyDirs only:
/tmp, /cache (HF/torch caches) and an in-memory /dev/shm; plus the results volume when the
spec names one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from ftscale.api import meta, outcomes, results_store, run_contract
from ftscale.controller import names
from ftscale.controller.settings import OperatorSettings
from ftscale.identity import RunKey


@dataclass(frozen=True)
class StudyRef:
    """What children need to know about their owner."""

    name: str
    namespace: str
    uid: str
    generation: int | None = None

    def owner_reference(self) -> dict[str, Any]:
        # controller=true: the garbage collector deletes children with the study, and
        # `kubectl get jobs` shows who owns them. blockOwnerDeletion keeps foreground deletion
        # honest (needs the ownerReferences permission the chart grants on the CRD's finalizers).
        return {"apiVersion": meta.API_VERSION, "kind": meta.KIND, "name": self.name,
                "uid": self.uid, "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class DesiredRun:
    """One run of the grid, as the operator needs it (built from ftscale.grid's PlannedRun)."""

    key: RunKey
    config: dict[str, Any]  # the exact JSON the trainer's --config takes
    gpus: int = 0
    nodes: int = 1  # spec.models[].nodes: > 1 is an Indexed Job of that many pods (docs/trainer.md)
    resources: dict[str, Any] = field(default_factory=dict)  # {"requests": {...}, "limits": {...}}
    x_values: dict[str, Any] = field(default_factory=dict)  # model_params / pretrain_tokens if known
    image: str | None = None  # spec.models[].image: overrides execution.image for this model
    gpu_hours: float | None = None  # the cost plan's estimate (ftscale.costplan); None: unpriced
    # The run's Job name: ftscale.identity.job_name(study, key), the one spelling of it.
    job_name: str = ""
    # Cached: hashing the identity 1,000 times per pass was most of a pass's time.
    run_id: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_id", self.key.run_id)


def common_labels(study: str, component: str) -> dict[str, str]:
    return {names.LABEL_STUDY: study, names.LABEL_COMPONENT: component,
            names.LABEL_MANAGED_BY: names.MANAGED_BY}


def run_labels(study: str, key: RunKey) -> dict[str, str]:
    return {
        **common_labels(study, names.COMPONENT_RUN),
        names.LABEL_RUN: key.run_id,
        names.LABEL_MODEL: key.model,
        names.LABEL_METHOD: key.method,
        names.LABEL_PET_SIZE: names.label_value(key.pet_size),
        names.LABEL_DATA_SIZE: str(key.data_size),
        names.LABEL_SEED: str(key.seed),
    }


# The Job's podFailurePolicy is derived from the exit-code table (ftscale.api.outcomes).
pod_failure_policy = outcomes.pod_failure_policy


# ---- runs on several nodes -------------------------------------------------------------------
# A run with nodes: M > 1 is an Indexed Job of M pods (hostnames `<job>-<index>`, given by the
# Job controller) plus a headless Service the pods name as their subdomain, so that every pod
# reaches `<job>-0.<service>`, where torchrun's c10d rendezvous listens. Plain batch/v1 + v1:
# Kueue admits the Job as a whole (all M pods or none).

# Service names must be DNS-1035 labels (start with a letter), and study names — hence Job
# names — may start with a digit. Every rendezvous Service is `r<job name>`: a prefix on all of
# them, not only on digit-led ones, keeps the name one-to-one with the Job's (a prefix only
# where needed would give study `1a` and study `r1a` the same Service).
SERVICE_PREFIX = "r"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods
MAX_DNS_LABEL = 63


def rendezvous_service_name(job_name: str) -> str:
    """The headless Service of a multi-node run Job. ValueError when it would pass 63
    characters — never for a Job the API server accepts as Indexed with M > 1 pods, whose
    name is at most 61 (see multinode_name_problem)."""
    name = f"{SERVICE_PREFIX}{job_name}"
    if len(name) > MAX_DNS_LABEL:
        raise ValueError(f"Service name {name!r} is longer than {MAX_DNS_LABEL} characters")
    return name


def rendezvous_endpoint(job_name: str) -> str:
    """host:port of the c10d rendezvous: the pod of index 0, by its name under the Service
    (resolved through the namespace's DNS search path)."""
    return f"{job_name}-0.{rendezvous_service_name(job_name)}:{run_contract.RDZV_PORT}"


def multinode_name_problem(job_name: str, nodes: int) -> str | None:
    """Why a run Job of `nodes` pods cannot exist under `job_name`, or None. The API server
    refuses an Indexed Job whose last pod hostname `<job>-<nodes-1>` is not a DNS label (63
    characters at most), so long study names leave no room for multi-node runs."""
    if nodes <= 1:
        return None
    hostname = f"{job_name}-{nodes - 1}"
    if len(hostname) <= MAX_DNS_LABEL:
        return None
    room = MAX_DNS_LABEL - len(f"-{nodes - 1}") - len(f"-{'x' * meta.RUN_ID_LENGTH}")
    return (f"a run on {nodes} nodes needs pod hostnames <job>-<index> of at most "
            f"{MAX_DNS_LABEL} characters, and {hostname} has {len(hostname)}: shorten the "
            f"study's name to {room} characters or fewer")


def _pod_security(settings: OperatorSettings) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user, "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"}}


CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}


def _scratch_volumes(settings: OperatorSettings, shm: bool) -> tuple[list[dict], list[dict]]:
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": settings.tmp_size}},
               {"name": "cache", "emptyDir": {"sizeLimit": settings.cache_size}}]
    mounts = [{"name": "tmp", "mountPath": names.TMP_DIR},
              {"name": "cache", "mountPath": names.CACHE_DIR}]
    if shm:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": settings.shm_size}})
        mounts.append({"name": "dshm", "mountPath": names.SHM_DIR})
    return volumes, mounts


# Environment of run and fit containers: caches on the writable emptyDir, nothing online.
BASE_ENV = [
    {"name": "HOME", "value": names.TMP_DIR},
    {"name": "XDG_CACHE_HOME", "value": names.CACHE_DIR},
    {"name": "HF_HOME", "value": f"{names.CACHE_DIR}/huggingface"},
    {"name": "HF_HUB_OFFLINE", "value": "1"},
    {"name": "TRANSFORMERS_OFFLINE", "value": "1"},
    {"name": "MPLCONFIGDIR", "value": f"{names.TMP_DIR}/matplotlib"},
    {"name": "PYTHONUNBUFFERED", "value": "1"},
]


def spec_volumes(execution: Mapping[str, Any], which: tuple[str, ...]) -> tuple[list[dict], list[dict]]:
    """PVC volumes and mounts named in spec.execution.volumes (models/data read-only unless
    the spec says otherwise; results always read-write)."""
    volumes, mounts = [], []
    for role in which:
        vol = (execution.get("volumes") or {}).get(role)
        if not vol:
            continue
        read_only = role != "results" and vol.get("readOnly", True)
        volumes.append({"name": role, "persistentVolumeClaim": {"claimName": vol["claimName"],
                                                                "readOnly": read_only}})
        mount = {"name": role, "mountPath": vol.get("mountPath") or f"/{role}", "readOnly": read_only}
        if vol.get("subPath"):
            mount["subPath"] = vol["subPath"]
        mounts.append(mount)
    return volumes, mounts


def merge_resources(base: Mapping[str, Any] | None, override: Mapping[str, Any] | None) -> dict[str, Any]:
    """execution.resources overridden by models[].resources, key by key."""
    out: dict[str, Any] = {}
    for part in ("requests", "limits"):
        merged = {**((base or {}).get(part) or {}), **((override or {}).get(part) or {})}
        if merged:
            out[part] = merged
    return out


def _tolerations(execution: Mapping[str, Any], gpus: int, settings: OperatorSettings) -> list[dict]:
    tolerations = [dict(t) for t in execution.get("tolerations") or ()]
    if gpus > 0 and not any(t.get("key") == settings.gpu_toleration_key for t in tolerations):
        # GPU nodes are commonly tainted nvidia.com/gpu:NoSchedule; GPU runs belong there.
        tolerations.append({"key": settings.gpu_toleration_key, "operator": "Exists",
                            "effect": "NoSchedule"})
    return tolerations


def trainer_image(execution: Mapping[str, Any], settings: OperatorSettings) -> str:
    image = execution.get("image") or settings.trainer_image
    if not image:
        raise ValueError("no trainer image: set spec.execution.image, or install the operator "
                         "with a default (FTSCALE_TRAINER_IMAGE / Helm value trainer.image)")
    return image


def _job_spec_common(execution: Mapping[str, Any], pods: int = 1) -> dict[str, Any]:
    # pods > 1: one Indexed Job of that many pods that run together. A failed attempt fails
    # every pod (torchrun on the others loses its peers) and backoffLimit counts pod failures,
    # so it is scaled by the pods: execution.backoffLimit stays the retries of one run.
    spec: dict[str, Any] = {"completions": pods, "parallelism": pods,
                            "backoffLimit": int(execution.get("backoffLimit", 2)) * pods}
    if pods > 1:
        spec["completionMode"] = "Indexed"
    if execution.get("activeDeadlineSeconds"):
        spec["activeDeadlineSeconds"] = int(execution["activeDeadlineSeconds"])
    # No ttlSecondsAfterFinished here: the operator sets it only after it has recorded the
    # result in status, so a fast TTL can never delete a result before it is harvested.
    # No `suspend` either: Kueue's webhook suspends queued Jobs itself, and the operator never
    # writes `suspend` (it would fight Kueue's admission).
    return spec


def run_job(study: StudyRef, spec: Mapping[str, Any], run: DesiredRun,
            settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job of one run. Raises ValueError when no trainer image is known."""
    execution = spec.get("execution") or {}
    labels = {**(execution.get("labels") or {}), **run_labels(study.name, run.key)}
    job_labels = dict(labels)
    if execution.get("queueName"):
        job_labels[names.LABEL_KUEUE_QUEUE] = execution["queueName"]
    scratch_volumes, scratch_mounts = _scratch_volumes(settings, shm=True)
    pvc_volumes, pvc_mounts = spec_volumes(execution, ("models", "data", "results"))
    from ftscale.controller import prefetch  # imported here: it builds on this module
    cache_volumes, cache_mounts = prefetch.cache_volume(execution, read_only=True)
    pvc_volumes, pvc_mounts = pvc_volumes + cache_volumes, pvc_mounts + cache_mounts
    config_volume = {"name": "run-config", "downwardAPI": {"items": [{
        "path": names.RUN_CONFIG_FILE,
        "fieldRef": {"fieldPath": f"metadata.annotations['{names.ANNOTATION_RUN_CONFIG}']"}}]}}
    resources = merge_resources(execution.get("resources"), run.resources)
    if run.gpus > 0:
        # Extended resources: limits only (requests default to limits and must equal them).
        resources.setdefault("limits", {})[settings.gpu_resource] = run.gpus
        resources.get("requests", {}).pop(settings.gpu_resource, None)
    results = (execution.get("volumes") or {}).get("results")
    output = (f"{results.get('mountPath') or names.RESULTS_DIR}/{study.name}/{run.run_id}"
              if results else None)
    multinode = run.nodes > 1
    env = [{"name": "FTSCALE_STUDY", "value": study.name},
           {"name": "FTSCALE_RUN_ID", "value": run.run_id}]
    if multinode:
        problem = multinode_name_problem(run.job_name, run.nodes)
        if problem:
            raise ValueError(problem)
        endpoint = rendezvous_endpoint(run.job_name)
        # For a trainer of your own (execution.command), which starts its own processes; the
        # pod's index is JOB_COMPLETION_INDEX (set by the Job controller).
        env += [{"name": "FTSCALE_NODES", "value": str(run.nodes)},
                {"name": "FTSCALE_RDZV_ENDPOINT", "value": endpoint}]
        launch = run_contract.launcher(execution.get("command"), run.gpus, nodes=run.nodes,
                                       rdzv_endpoint=endpoint, rdzv_id=run.run_id)
    else:
        launch = run_contract.launcher(execution.get("command"), run.gpus)
    command = run_contract.trainer_argv(
        launch, f"{names.CONFIG_DIR}/{names.RUN_CONFIG_FILE}", output, settings.trainer_metrics_port)
    container = {
        "name": names.RUN_CONTAINER,
        "image": run.image or trainer_image(execution, settings),
        "command": command,
        "env": BASE_ENV + env,
        "resources": resources,
        "securityContext": dict(CONTAINER_SECURITY),
        "terminationMessagePath": outcomes.TERMINATION_MESSAGE_PATH,
        # The trainer writes its result JSON there; if it dies first, the log tail explains why.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": scratch_mounts + pvc_mounts + [
            {"name": "run-config", "mountPath": names.CONFIG_DIR, "readOnly": True}],
    }
    ports = []
    if settings.trainer_metrics_port:
        ports.append({"name": "metrics", "containerPort": settings.trainer_metrics_port,
                      "protocol": "TCP"})
    if multinode:  # informational (pods reach any port of each other): names it for policies
        ports.append({"name": "rendezvous", "containerPort": run_contract.RDZV_PORT,
                      "protocol": "TCP"})
    if ports:
        container["ports"] = ports
    if execution.get("imagePullPolicy"):
        container["imagePullPolicy"] = execution["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",  # required by podFailurePolicy; retries are new pods
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        "containers": [container],
        "volumes": scratch_volumes + pvc_volumes + [config_volume],
    }
    tolerations = _tolerations(execution, run.gpus, settings)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if execution.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(execution["nodeSelector"])
    if execution.get("priorityClassName"):
        pod_spec["priorityClassName"] = execution["priorityClassName"]
    if execution.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = execution["serviceAccountName"]
    if multinode:
        # With the Job controller's hostname <job>-<index>, this makes each pod resolvable as
        # <job>-<index>.<service> once the headless Service exists.
        pod_spec["subdomain"] = rendezvous_service_name(run.job_name)
    job_spec = _job_spec_common(execution, run.nodes)
    job_spec["podFailurePolicy"] = pod_failure_policy(names.RUN_CONTAINER)
    job_spec["template"] = {
        "metadata": {"labels": labels, "annotations": {
            # A hub model downloaded into the model cache is read from its folder there.
            names.ANNOTATION_RUN_CONFIG: json.dumps(prefetch.run_config(spec, run.config),
                                                    sort_keys=True, separators=(",", ":"))}},
        "spec": pod_spec,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": run.job_name, "namespace": study.namespace,
                     "labels": job_labels, "ownerReferences": [study.owner_reference()]},
        "spec": job_spec,
    }


def rendezvous_service(study: StudyRef, spec: Mapping[str, Any], run: DesiredRun) -> dict[str, Any]:
    """The headless Service of a run on several nodes (run.nodes > 1): no cluster IP, only DNS
    records for the Job's pods — ready or not, since the rendezvous happens before any pod could
    report ready (and run pods have no readiness probe). Owned by the study like the Job, and
    deleted by the operator once the run's result is recorded."""
    execution = spec.get("execution") or {}
    labels = {**(execution.get("labels") or {}), **run_labels(study.name, run.key)}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": rendezvous_service_name(run.job_name), "namespace": study.namespace,
                     "labels": labels, "ownerReferences": [study.owner_reference()]},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: run.job_name},
            "ports": [{"name": "rendezvous", "port": run_contract.RDZV_PORT,
                       "targetPort": run_contract.RDZV_PORT, "protocol": "TCP"}],
        },
    }


def results_configmap(study: StudyRef, index: int) -> dict[str, Any]:
    """Shard `index` of the study's results ConfigMaps (ftscale.api.results_store), without
    data: the operator merges `<run id>.json` keys into it."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": results_store.shard_name(study.name, index),
                         "namespace": study.namespace,
                         "labels": common_labels(study.name, names.COMPONENT_RESULTS),
                         "ownerReferences": [study.owner_reference()]}}


def fit_input_configmap(study: StudyRef) -> dict[str, Any]:
    """The fit Job's input ConfigMap, without data (ftscale.api.fit_input: one binaryData key)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": names.fit_input_configmap_name(study.name),
                         "namespace": study.namespace,
                         "labels": common_labels(study.name, names.COMPONENT_FIT),
                         "ownerReferences": [study.owner_reference()]}}


def fit_job(study: StudyRef, spec: Mapping[str, Any], input_digest: str,
            settings: OperatorSettings) -> dict[str, Any]:
    """The fit Job: the trainer image runs `python -m ftscale.law.job` on the fit input from the
    results ConfigMap; its termination message (the compact fit summary) becomes status.fit."""
    execution = spec.get("execution") or {}
    labels = {**(execution.get("labels") or {}), **common_labels(study.name, names.COMPONENT_FIT)}
    scratch_volumes, scratch_mounts = _scratch_volumes(settings, shm=False)
    pvc_volumes, pvc_mounts = spec_volumes(execution, ("results",))
    results = (execution.get("volumes") or {}).get("results")
    output = (f"{results.get('mountPath') or names.RESULTS_DIR}/{study.name}/fit" if results
              else f"{names.TMP_DIR}/fit")
    input_volume = {"name": "fit-input", "configMap": {
        "name": names.fit_input_configmap_name(study.name),
        "items": [{"key": names.FIT_INPUT_FILE, "path": names.FIT_INPUT_FILE}]}}
    container = {
        "name": names.FIT_CONTAINER,
        "image": trainer_image(execution, settings),
        "command": ["python", "-m", "ftscale.law.job",
                    "--input", f"{names.CONFIG_DIR}/{names.FIT_INPUT_FILE}", "--output", output],
        "env": BASE_ENV + [{"name": "FTSCALE_STUDY", "value": study.name}],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}},
        "securityContext": dict(CONTAINER_SECURITY),
        "terminationMessagePath": outcomes.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": scratch_mounts + pvc_mounts + [
            {"name": "fit-input", "mountPath": names.CONFIG_DIR, "readOnly": True}],
    }
    if execution.get("imagePullPolicy"):
        container["imagePullPolicy"] = execution["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        "containers": [container],
        "volumes": scratch_volumes + pvc_volumes + [input_volume],
    }
    if execution.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(execution["nodeSelector"])
    if execution.get("tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in execution["tolerations"]]
    if execution.get("priorityClassName"):
        pod_spec["priorityClassName"] = execution["priorityClassName"]
    job_spec = _job_spec_common({"backoffLimit": 1})
    job_spec["podFailurePolicy"] = pod_failure_policy(names.FIT_CONTAINER)
    job_spec["template"] = {"metadata": {"labels": labels}, "spec": pod_spec}
    job_labels = dict(labels)
    if execution.get("queueName"):
        job_labels[names.LABEL_KUEUE_QUEUE] = execution["queueName"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": names.fit_job_name(study.name, input_digest), "namespace": study.namespace,
                     "labels": job_labels,
                     "annotations": {names.ANNOTATION_FIT_DIGEST: input_digest},
                     "ownerReferences": [study.owner_reference()]},
        "spec": job_spec,
    }

