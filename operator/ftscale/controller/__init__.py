"""The ScalingStudy operator (kopf): ScalingStudy → run Jobs → results → fit Job → status.

Layout (pure decisions apart from I/O, after kubebuilder):
- `names`       label/annotation keys and child object names (deterministic, from the run identity)
- `settings`    the one settings dataclass, read from FTSCALE_* environment variables
- `observe`     compact, immutable views of Jobs and Pods (what the watch caches keep)
- `harvest`     a finished Job + its pods → run outcome (result, failure reason)
- `templates`   the run Job, fit Job and results ConfigMap manifests
- `conditions`  condition types, reasons and the transition-preserving setter
- `plan`        plan(study, desired runs, observed jobs/pods, now) → actions + status (pure)
- `kube`        the thin executor of a plan against the API (create/patch, AlreadyExists = done)
- `leader`      Lease-based leader election (two replicas: only one acts)
- `reconciler`  the work queue: debounced, level-based reconcile passes per study
- `metrics`     prometheus-client objects built from ftscale.metric_names
- `handlers`    the kopf registrations: indices, watch triggers, startup/cleanup

The handlers import kopf; everything else except `kube`/`leader`/`reconciler` is pure and
unit-tested without a cluster (tests/unit/controller/).
"""
