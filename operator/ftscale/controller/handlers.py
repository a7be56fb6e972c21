"""kopf registrations — thin: they gather what changed and hand it to the Reconciler.

- two indices (the watch caches): this study's Jobs and pods, as compact views, keyed by
  (namespace, study). kopf fills every index from a full LIST before any other handler runs,
  so after a restart the first pass already sees every Job: no duplicate is ever planned.
- three event handlers (studies, Jobs, pods) that only enqueue the study: no kopf-managed
  annotations, finalizers or progress storage are ever written to any object.
- startup/cleanup: settings, API client, metrics server, leader election, the reconcile loop.
- probes: extra fields for kopf's liveness endpoint (/healthz).

Run with `ftscale operator` (or `kopf run -m ftscale.controller.handlers --standalone`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from typing import Any

import kopf

from ftscale.controller import names
from ftscale.controller.kube import Kube, load_api_client, own_namespace
from ftscale.controller.leader import LeaderElector
from ftscale.controller.metrics import OperatorMetrics, serve
from ftscale.controller.observe import job_view, pod_view
from ftscale.controller.reconciler import Reconciler
from ftscale.controller.settings import OperatorSettings

log = logging.getLogger("ftscale.operator")

# Set by `ftscale operator` before kopf starts (CLI flags over env); `kopf run` falls back to env.
CONFIG: OperatorSettings | None = None
KUBECONFIG: str | None = None

OWNED = {names.LABEL_STUDY: kopf.PRESENT, names.LABEL_MANAGED_BY: names.MANAGED_BY}


class NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds every object's "essence" (a deep copy minus status) on every watch event,
    to diff it for on.create/update/field handlers. This operator registers none (only indices
    and on.event), so the copy is pure cost: at 10,000 runs ~15 % of the operator's time went
    to deep-copying Jobs and pods. An empty essence never differs."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()


def _study_key(namespace: str | None, labels: dict[str, str]) -> tuple[str, str]:
    return (namespace or "", labels.get(names.LABEL_STUDY, ""))


# Every handler is async: kopf would run a sync one in a thread pool, a thread hop per watch
# event (thousands per study).

# ---- watch caches ----------------------------------------------------------------------------
@kopf.index("batch", "v1", "jobs", labels=OWNED)
async def ftscale_jobs(body: kopf.Body, namespace: str, labels: dict[str, str], **_: Any):
    return {_study_key(namespace, labels): job_view(body)}


@kopf.index("", "v1", "pods", labels=OWNED)
async def ftscale_pods(body: kopf.Body, namespace: str, labels: dict[str, str], **_: Any):
    return {_study_key(namespace, labels): pod_view(body)}


# ---- triggers --------------------------------------------------------------------------------
@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def study_event(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        # The raw watch object (a plain dict), not kopf's live Body view.
        reconciler.observe_study(event.get("type") or "", event["object"])


@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
async def job_event(namespace: str, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        reconciler.enqueue(_study_key(namespace, labels))


@kopf.on.event("", "v1", "pods", labels=OWNED)
async def pod_event(namespace: str, labels: dict[str, str], memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        reconciler.enqueue(_study_key(namespace, labels))


# ---- credentials ----------------------------------------------------------------------------
@kopf.on.login()
def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo:
    """kopf's own watches use the same credentials as our API client: in-cluster, else the
    --kubeconfig path (kopf's default login would read only $KUBECONFIG as it was at import)."""
    cfg = load_api_client(KUBECONFIG).configuration
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host, ca_path=cfg.ssl_ca_cert, insecure=not cfg.verify_ssl,
        username=cfg.username or None, password=cfg.password or None, scheme=scheme, token=token,
        certificate_path=cfg.cert_file, private_key_path=cfg.key_file,
        trust_env=settings.networking.trust_env)


# ---- lifecycle -------------------------------------------------------------------------------
@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, ftscale_jobs: kopf.Index,
                  ftscale_pods: kopf.Index, **_: Any) -> None:
    ours = CONFIG or OperatorSettings.from_env()
    # We post our own Events (run failures, the fit); kopf's would add one per log line.
    settings.posting.enabled = False
    settings.persistence.diffbase_storage = NoDiffBase()
    # React to a burst of watch events quickly (the default batches them for 0.1 s per object).
    settings.batching.batch_window = 0.05
    # Bounded watch requests, so a silently dropped connection is noticed within minutes.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 60
    # Filter Jobs and pods on the server: the operator then never receives (nor holds in
    # memory) the cluster's other pods, however many there are.
    owned = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY},{names.LABEL_STUDY}"
    settings.watching.label_selectors["batch", "v1", "jobs"] = owned
    settings.watching.label_selectors["", "v1", "pods"] = owned

    api = load_api_client(KUBECONFIG, pool_size=ours.api_threads + 2)  # + the status lane
    kube = Kube(api, identity=ours.identity)
    metrics = OperatorMetrics()
    if ours.metrics_port:
        serve(metrics, ours.metrics_port, ours.metrics_bind_address)
    if ours.leader_election and not ours.lease_namespace:
        ours = dataclasses.replace(ours, lease_namespace=own_namespace(KUBECONFIG))

    def jobs_of(key):
        return list(ftscale_jobs.get(key, ()))

    def pods_of(key):
        return list(ftscale_pods.get(key, ()))

    elector = None
    if ours.leader_election:
        elector = LeaderElector(kube, ours.lease_namespace, ours.lease_name, ours.identity,
                                ours.lease_duration_seconds, ours.lease_renew_seconds)
    reconciler = Reconciler(ours, kube, metrics, jobs_of, pods_of,
                            is_leader=(lambda: elector.is_leader) if elector else (lambda: True))
    if elector is not None:
        elector.on_started_leading = reconciler.leadership_gained
    memo["settings"] = ours
    memo["reconciler"] = reconciler
    memo["elector"] = elector
    memo["tasks"] = [asyncio.create_task(reconciler.run(), name="ftscale-reconciler")]
    if ours.ui_port:
        # The study browser (ftscale.browser) reads the reconciler's cached studies; every
        # replica serves it, leader or not (standbys keep warm caches).
        from ftscale.browser import start as start_browser
        from ftscale.report.cluster import kube_reader

        memo["browser"] = await start_browser(
            lambda: [m.body for m in list(reconciler.studies.values()) if m.body],
            kube_reader(kube), ours.ui_port, ours.ui_bind_address, ours.ui_grafana_url)
    if elector is not None:
        memo["tasks"].append(asyncio.create_task(elector.run(), name="ftscale-leader-election"))
    log.info("ftscale operator %s starting: namespaces=%s leader_election=%s metrics_port=%s "
             "ui_port=%s", ours.identity, ",".join(ours.namespaces) or "(all)",
             ours.leader_election, ours.metrics_port, ours.ui_port or "off")
    if elector is not None:
        # Two operators exclude each other only through the same Lease: one started with
        # another lease namespace or name would act on the same studies at the same time.
        log.warning("leader election through Lease %s/%s: any other ftscale operator on this "
                    "cluster must use the same lease namespace and name (docs/operator.md, "
                    "\"Restarts and replicas\")", ours.lease_namespace, ours.lease_name)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", ()):
        task.cancel()
    if memo.get("browser") is not None:
        await memo["browser"].cleanup()
    elector: LeaderElector | None = memo.get("elector")
    if elector is not None:
        await asyncio.get_running_loop().run_in_executor(None, elector.release)


@kopf.on.probe(id="leader")
def probe_leader(memo: kopf.Memo, **_: Any) -> bool:
    elector: LeaderElector | None = memo.get("elector")
    return True if elector is None else elector.is_leader


@kopf.on.probe(id="studies")
def probe_studies(memo: kopf.Memo, **_: Any) -> int:
    reconciler: Reconciler | None = memo.get("reconciler")
    return 0 if reconciler is None else len(reconciler.studies)


def configure(settings: OperatorSettings, kubeconfig: str | None = None) -> None:
    """Called by `ftscale operator` before kopf starts."""
    global CONFIG, KUBECONFIG
    CONFIG = settings
    KUBECONFIG = kubeconfig
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's own login reads it too
