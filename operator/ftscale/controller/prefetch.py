"""Hub models on a cluster: the prefetch Jobs that download a model's revision into the study's
model cache, and the gate that holds run Jobs until that download has succeeded. Pure.

With `spec.execution.modelCache` (a PersistentVolumeClaim), every model whose source is a
Hugging Face id (`org/name`, or a bare `name`) is fetched by one prefetch Job per distinct
(source, revision) — `models[].revision`, default `main` — that runs
`python -m ftscale_trainer.prefetch` (huggingface_hub.snapshot_download) in the trainer image
with the claim mounted read-write and `HF_TOKEN` from `execution.hfTokenSecret`. Each revision
lands in a plain folder of its own, `cache_folder(source, revision)`; run pods mount the claim
read-only and their trainer config names that folder as `model_source`, so the trainer reads it
like any pre-filled checkpoint, offline (`HF_HUB_OFFLINE=1` stays). Why a folder per revision
(snapshot_download's `local_dir`) rather than huggingface_hub's own cache layout: that cache
keys snapshots by commit hash, which the operator cannot know when it writes a run's config,
and the trainer reads `config.json` of its model folder before it loads anything
(docs/trainer.md). Without a model cache nothing here applies: sources stay folders on the
models volume (docs/cluster-install.md, "Hub models and revisions").

The reconcile pass calls `gate(...)` with the runs it would create: runs whose download has
succeeded pass; the others wait while their prefetch Job is created or runs; a failed prefetch
Job is reported (its runs never start until the Job is deleted and, with the cause fixed,
created again).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Collection, Iterable, Mapping
from urllib.parse import quote

from ftscale.api import outcomes
from ftscale.controller import names
from ftscale.controller.observe import JobView, PodView
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import (BASE_ENV, CONTAINER_SECURITY, DesiredRun, StudyRef,
                                          _pod_security, _scratch_volumes, common_labels,
                                          trainer_image)

DEFAULT_REVISION = "main"  # what the hub serves when no revision is named
DEFAULT_TOKEN_KEY = "HF_TOKEN"  # execution.hfTokenSecret.key's default (the CRD's too)
# A Hugging Face repo id: `name` or `namespace/name`, letters, digits, `-`, `_`, `.`
# (huggingface_hub.utils.validate_repo_id, which also forbids `--` and `..`). Anything else —
# an absolute path, a path of three parts, `toy:` — is not downloaded.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
# The hub environment of prefetch pods: BASE_ENV without the offline switches (the one pod that
# must reach the hub), no telemetry, no progress bars in the log.
_ONLINE_OFF = {"HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}
_PREFETCH_ENV = [e for e in BASE_ENV if e["name"] not in _ONLINE_OFF] + [
    {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    {"name": "HF_HUB_DISABLE_PROGRESS_BARS", "value": "1"},
]
# A download is network- and disk-bound: one core; memory for hf_xet's buffers.
PREFETCH_RESOURCES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "8Gi"}}


def is_hub_id(source: str) -> bool:
    """Whether a models[].source is a Hugging Face id the prefetch can download."""
    return (_HUB_ID.match(source) is not None and "--" not in source and ".." not in source
            and not source.endswith(".git"))


@dataclass(frozen=True, order=True)
class Fetch:
    """One download: a hub model at one revision (several models may share it)."""

    source: str
    revision: str


def cache_folder(fetch: Fetch, root: str = names.MODEL_CACHE_DIR) -> str:
    """The folder of `fetch` in the model cache, as run and prefetch pods see it:
    `<root>/<org>--<name>/<revision>`. One-to-one: repo ids never contain `--`, and the
    revision is percent-encoded, so `refs/pr/1` stays one folder and cannot meet another."""
    return f"{root}/{fetch.source.replace('/', '--')}/{quote(fetch.revision, safe='')}"


def _execution(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    return spec.get("execution") or {}


def model_fetch(spec: Mapping[str, Any], model: Mapping[str, Any]) -> Fetch | None:
    """The download a model needs before its runs start, or None: no model cache, or a source
    that is not a hub id (toy:, a path on the models volume)."""
    if not _execution(spec).get("modelCache") or not is_hub_id(model.get("source", "")):
        return None
    return Fetch(model["source"], model.get("revision") or DEFAULT_REVISION)


def fetches(spec: Mapping[str, Any]) -> dict[str, Fetch]:
    """model name → its download, for the models that need one."""
    out = {}
    for model in spec.get("models") or ():
        fetch = model_fetch(spec, model)
        if fetch is not None:
            out[model["name"]] = fetch
    return out


def spec_problems(spec: Mapping[str, Any]) -> list[str]:
    """Why the study's models[].revision cannot be honoured on a cluster (an InvalidSpec, before
    any Job starts): a revision needs the model cache, and a hub id to fetch it from. The CRD
    already refuses a revision on a toy: model."""
    problems = []
    cache = _execution(spec).get("modelCache")
    for model in spec.get("models") or ():
        revision, source = model.get("revision"), model.get("source", "")
        if not revision or source.startswith("toy:"):
            continue
        where = f"models[name={model['name']}].revision {revision}"
        if not is_hub_id(source):
            problems.append(f"{where}: a revision is fetched from the hub, and source {source} "
                            "is not a Hugging Face id (org/name): name the id, or point source "
                            "at a folder that holds that revision and drop revision")
        elif not cache:
            problems.append(f"{where}: a revision is downloaded into execution.modelCache, and "
                            "the study sets none: add execution.modelCache.claimName (a "
                            "PersistentVolumeClaim), or point source at a pre-filled folder of "
                            "that revision on the models volume and drop revision")
    return problems


def fetch_digest(spec: Mapping[str, Any], fetch: Fetch) -> str:
    """What makes one prefetch Job differ from another: the download, where it goes, and the
    token it uses (a fixed secret gives a new Job; a failed one is not retried under the same
    name, docs/cluster-install.md)."""
    execution = _execution(spec)
    cache = execution.get("modelCache") or {}
    token = execution.get("hfTokenSecret") or {}
    basis = {"source": fetch.source, "revision": fetch.revision,
             "claim": cache.get("claimName"), "subPath": cache.get("subPath"),
             "secret": token.get("name"), "key": token.get("key", DEFAULT_TOKEN_KEY)}
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def job_name(study: str, spec: Mapping[str, Any], fetch: Fetch) -> str:
    return names.prefetch_job_name(study, fetch_digest(spec, fetch))


def cache_volume(execution: Mapping[str, Any], *, read_only: bool) -> tuple[list[dict], list[dict]]:
    """The model cache's volume and mount ([] when the study has none): read-write for the
    prefetch Job that fills it, read-only for run pods."""
    cache = execution.get("modelCache")
    if not cache:
        return [], []
    volume = {"name": "model-cache", "persistentVolumeClaim": {
        "claimName": cache["claimName"], **({"readOnly": True} if read_only else {})}}
    mount = {"name": "model-cache", "mountPath": names.MODEL_CACHE_DIR, "readOnly": read_only}
    if cache.get("subPath"):
        mount["subPath"] = cache["subPath"]
    return [volume], [mount]


def run_config(spec: Mapping[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A run's trainer config with `model_source` pointing at its model's folder in the model
    cache when the model is downloaded there; otherwise the config as it was (the same object)."""
    fetch = next((model_fetch(spec, m) for m in spec.get("models") or ()
                  if m.get("name") == config.get("model")), None)
    return config if fetch is None else {**config, "model_source": cache_folder(fetch)}


def prefetch_command(fetch: Fetch) -> list[str]:
    """The prefetch container's command (ftscale_trainer.prefetch in the trainer image)."""
    return ["python", "-m", "ftscale_trainer.prefetch", "--source", fetch.source,
            "--revision", fetch.revision, "--local-dir", cache_folder(fetch)]


def prefetch_job(study: StudyRef, spec: Mapping[str, Any], fetch: Fetch,
                 settings: OperatorSettings) -> dict[str, Any]:
    """The batch/v1 Job that downloads `fetch` into the model cache. Raises ValueError when no
    trainer image is known. Its pods follow the run pods' security posture (non-root, read-only
    root filesystem, no service-account token); the one difference is that they may reach the
    hub, and the claim is mounted read-write."""
    execution = _execution(spec)
    labels = {**(execution.get("labels") or {}),
              **common_labels(study.name, names.COMPONENT_PREFETCH)}
    scratch_volumes, scratch_mounts = _scratch_volumes(settings, shm=False)
    cache_volumes, cache_mounts = cache_volume(execution, read_only=False)
    env = list(_PREFETCH_ENV) + [{"name": "FTSCALE_STUDY", "value": study.name}]
    token = execution.get("hfTokenSecret")
    if token:
        # The kubelet reads the Secret for the pod: the operator itself never reads Secrets.
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": token["name"], "key": token.get("key", DEFAULT_TOKEN_KEY)}}})
    container = {
        "name": names.PREFETCH_CONTAINER,
        "image": trainer_image(execution, settings),
        "command": prefetch_command(fetch),
        "env": env,
        "resources": PREFETCH_RESOURCES,
        "securityContext": dict(CONTAINER_SECURITY),
        "terminationMessagePath": outcomes.TERMINATION_MESSAGE_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": scratch_mounts + cache_mounts,
    }
    if execution.get("imagePullPolicy"):
        container["imagePullPolicy"] = execution["imagePullPolicy"]
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(settings),
        "containers": [container],
        "volumes": scratch_volumes + cache_volumes,
    }
    for key in ("nodeSelector", "priorityClassName", "serviceAccountName"):
        if execution.get(key):
            pod_spec[key] = execution[key]
    if execution.get("tolerations"):
        pod_spec["tolerations"] = [dict(t) for t in execution["tolerations"]]
    job_labels = dict(labels)
    if execution.get("queueName"):
        job_labels[names.LABEL_KUEUE_QUEUE] = execution["queueName"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(study.name, spec, fetch), "namespace": study.namespace,
                     "labels": job_labels,
                     "annotations": {names.ANNOTATION_PREFETCH_SOURCE: fetch.source,
                                     names.ANNOTATION_PREFETCH_REVISION: fetch.revision},
                     "ownerReferences": [study.owner_reference()]},
        "spec": {
            # A network failure (exit 1) is retried; a repo, revision or token that the hub
            # refuses (exit 2) fails the Job at once (ftscale.api.outcomes); a retry resumes
            # the files already in the folder.
            "backoffLimit": int(execution.get("backoffLimit", 2)),
            "podFailurePolicy": outcomes.pod_failure_policy(names.PREFETCH_CONTAINER),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


# ---- the gate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchFailure:
    """A prefetch Job that failed: its models' runs cannot start."""

    job: str
    source: str
    revision: str
    reason: str  # an outcomes reason (InvalidConfig: the hub refused; RuntimeError: network...)
    message: str
    models: tuple[str, ...]

    def describe(self) -> str:
        return (f"prefetch Job {self.job} of {self.source} revision {self.revision} (models "
                f"{', '.join(self.models)}) failed: {self.reason}: {self.message}")


@dataclass
class Gate:
    allowed: list[DesiredRun] = field(default_factory=list)  # may start now, in the order given
    create_jobs: list[dict[str, Any]] = field(default_factory=list)  # prefetch Jobs to create
    failures: list[FetchFailure] = field(default_factory=list)
    # run id → the prefetch Job it waits for (created now, pending or running)
    waiting: dict[str, str] = field(default_factory=dict)


def gate(study: StudyRef, spec: Mapping[str, Any], runs: Iterable[DesiredRun],
         jobs: Iterable[JobView], settings: OperatorSettings, *,
         pods: Iterable[PodView] = (), pending_creates: Collection[str] = (),
         backoff: Collection[str] = ()) -> Gate:
    """Which of `runs` (the runs a pass would create, in order) may start now, and which
    prefetch Jobs to create for the others.

    jobs: the study's observed Jobs (any component; only prefetch Jobs the study controls
        count); pods: their pods (a failed prefetch pod's termination message says why).
    pending_creates / backoff: Job names created by an earlier pass and not yet in the cache,
        and names not to create again in this pass (as for run Jobs).

    A run passes when its model needs no download, or its prefetch Job is Complete (also while
    that Job is being deleted: the files stay). It waits while the Job is missing (then the Job
    is in create_jobs, once per download), pending creation, or unfinished. A Failed prefetch
    Job holds its runs and is reported in `failures` once per download.
    """
    need = fetches(spec)
    ours = {j.name: j for j in jobs
            if j.component == names.COMPONENT_PREFETCH and j.owner_uid == study.uid}
    job_uids = {name: j.uid for name, j in ours.items()}
    messages: dict[str, PodView] = {}
    for p in pods:
        if p.job in ours and p.owner_uid == job_uids[p.job] and p.phase == "Failed":
            newest = messages.get(p.job)
            if newest is None or (p.finished_at or 0) >= (newest.finished_at or 0):
                messages[p.job] = p
    out = Gate()
    decided: dict[Fetch, str | None] = {}  # download → the Job to wait for, None when it is there
    failed: set[Fetch] = set()
    for run in runs:
        fetch = need.get(run.key.model)
        if fetch is None:
            out.allowed.append(run)
            continue
        if fetch not in decided:
            name = job_name(study.name, spec, fetch)
            job = ours.get(name)
            decided[fetch] = name
            if job is not None and job.finished == "Complete":
                decided[fetch] = None
            elif job is not None and job.finished == "Failed":
                failed.add(fetch)
                users = tuple(sorted(m for m, f in need.items() if f == fetch))
                out.failures.append(_failure(job, fetch, users, messages.get(name)))
            elif job is None and name not in pending_creates and name not in backoff:
                out.create_jobs.append(prefetch_job(study, spec, fetch, settings))
        if decided[fetch] is None:
            out.allowed.append(run)
        elif fetch not in failed:
            out.waiting[run.run_id] = decided[fetch]
    return out


def _failure(job: JobView, fetch: Fetch, models: tuple[str, ...], pod: PodView | None) -> FetchFailure:
    """The failure as the prefetch pod told it (exit code → reason, termination message), else
    as the Job controller did (BackoffLimitExceeded, DeadlineExceeded, ...)."""
    reason = job.finished_reason or outcomes.RUNTIME_ERROR
    message = job.finished_message or ""
    if pod is not None:
        entry = outcomes.BY_CODE.get(pod.exit_code) if pod.exit_code is not None else None
        if entry is not None and entry.reason:
            reason = entry.reason
        elif pod.reason == "OOMKilled":
            reason = outcomes.OOM_KILLED
        if pod.message:
            message = pod.message.strip()
    return FetchFailure(job=job.name, source=fetch.source, revision=fetch.revision,
                        reason=reason, message=message[-500:], models=models)
