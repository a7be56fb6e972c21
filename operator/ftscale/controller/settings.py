"""Operator settings: one dataclass, every field read from an FTSCALE_* environment variable.

The Helm chart sets these from its values; `ftscale operator --help` lists them. Defaults suit
a real cluster; tests and the benchmark shorten the timers.
"""

from __future__ import annotations

import os
from dataclasses import MISSING as dataclass_missing
from dataclasses import dataclass, field, fields
from typing import Mapping

ENV_PREFIX = "FTSCALE_"


class SettingsError(ValueError):
    """An environment variable that cannot be parsed; the message names it and the fix."""


def _env(name: str) -> str:
    return ENV_PREFIX + name.upper()


@dataclass(frozen=True)
class OperatorSettings:
    # Trainer image for studies that do not set spec.execution.image (the chart's trainer.image).
    trainer_image: str = ""
    # Port of a run pod's live /metrics (container port named "metrics", scraped by the
    # chart's PodMonitor); passed to the trainer as --metrics-port. 0: no live metrics.
    trainer_metrics_port: int = 9400
    # Namespaces to watch (comma-separated in FTSCALE_NAMESPACES); empty = the whole cluster.
    namespaces: tuple[str, ...] = ()
    # Images and ServiceAccounts studies may name (comma-separated shell patterns, e.g.
    # registry.example/ml/*); empty = any. A study asking for another is refused
    # (ftscale.controller.policy). The trainer image above is always allowed.
    allowed_images: tuple[str, ...] = ()
    allowed_service_accounts: tuple[str, ...] = ()
    # Port of the Prometheus /metrics endpoint (0 disables it).
    metrics_port: int = 8080
    # Address the /metrics endpoint binds: 0.0.0.0 in a pod (Prometheus scrapes the pod IP);
    # 127.0.0.1 for an operator started on a workstation.
    metrics_bind_address: str = "0.0.0.0"
    # Port of kopf's liveness endpoint, served at /healthz (0 disables it).
    health_port: int = 8081
    # Address the /healthz endpoint binds (the kubelet probes the pod IP).
    health_bind_address: str = "0.0.0.0"
    # Port of the read-only study browser (ftscale.browser; docs/cluster-install.md, "The
    # study browser"). 0: off.
    ui_port: int = 0
    # Address the study browser binds. 127.0.0.1: reached only through `kubectl port-forward`,
    # so Kubernetes RBAC (pods/portforward) decides who sees it; 0.0.0.0 behind a Service and
    # an Ingress that authenticates.
    ui_bind_address: str = "127.0.0.1"
    # Grafana's base URL (e.g. https://grafana.example.com): study pages link to the ftscale
    # dashboard filtered to the study. Empty: no link.
    ui_grafana_url: str = ""
    # Lease-based leader election: with it, any number of replicas is safe and only the
    # holder of the Lease acts; the others keep warm caches and take over when it expires.
    leader_election: bool = True
    # The Lease object: name and namespace. Empty namespace: the operator's own — the pod's
    # namespace in a cluster (the chart sets the release namespace), else the kubeconfig
    # context's namespace — so every way of starting it competes for the same Lease.
    lease_name: str = "ftscale-operator"
    lease_namespace: str = ""
    # How long a Lease stays valid without renewal; a standby takes over after this.
    lease_duration_seconds: float = 15.0
    # How often the leader renews (well under the duration, so one slow renewal is harmless).
    lease_renew_seconds: float = 5.0
    # This replica's identity in the Lease (the chart passes the pod name).
    identity: str = field(default_factory=lambda: os.environ.get("HOSTNAME", "") or f"pid-{os.getpid()}")
    # Collect triggers for this long before a reconcile pass, so that a burst of Job events
    # (many runs finishing together) costs one status write, not one per run.
    batch_seconds: float = 0.25
    # At most one status write per study in this interval: under a stream of finishing runs
    # a pass then records all of them at once (fewer API writes per run); it bounds the added
    # harvest latency too.
    write_interval_seconds: float = 1.0
    # Full re-reconcile of every study at this interval, even without events (a safety net).
    resync_seconds: float = 60.0
    # Studies reconciled concurrently.
    workers: int = 4
    # Threads for API calls (the kubernetes client is synchronous).
    api_threads: int = 8
    # After a Job finished, wait this long for its pod (with the termination message) to show
    # up in the cache before recording the run as Failed/ResultMissing.
    result_grace_seconds: float = 30.0
    # A created run whose pod cannot be created, pulled or scheduled for this long sets the
    # study's Stalled condition (and a Warning Event) naming the cause.
    stuck_seconds: float = 60.0
    # Taint key tolerated by GPU run pods (NoSchedule), in addition to spec tolerations.
    gpu_toleration_key: str = "nvidia.com/gpu"
    # Extended resource name for GPUs.
    gpu_resource: str = "nvidia.com/gpu"
    # UID/GID the run and fit pods run as (non-root; the trainer image's user).
    run_as_user: int = 1000
    # Size limit of the in-memory /dev/shm emptyDir of run pods (torch DataLoader workers).
    shm_size: str = "2Gi"
    # Size limit of the /cache emptyDir (HF and torch caches).
    cache_size: str = "20Gi"
    # Size limit of the /tmp emptyDir.
    tmp_size: str = "2Gi"
    # Log format: "json" (one object per line, for log shippers) or "plain".
    log_format: str = "json"
    # Log level name (DEBUG, INFO, WARNING, ...).
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Read every field from FTSCALE_<FIELD> (upper case); unset variables keep defaults.

        Raises SettingsError naming the variable when a value does not parse.
        """
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(_env(f.name))
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, f.type)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.lease_renew_seconds >= self.lease_duration_seconds:
            raise SettingsError(
                f"{_env('lease_renew_seconds')}={self.lease_renew_seconds} must be below "
                f"{_env('lease_duration_seconds')}={self.lease_duration_seconds}: a leader must "
                f"renew before its lease expires")
        if self.workers < 1 or self.api_threads < 1:
            raise SettingsError(f"{_env('workers')} and {_env('api_threads')} must be at least 1")
        if not 0 <= self.ui_port <= 65535:
            raise SettingsError(f"{_env('ui_port')}={self.ui_port} must be a port (1-65535) or 0 (off)")
        if self.ui_port and self.ui_port in (self.metrics_port, self.health_port):
            raise SettingsError(f"{_env('ui_port')}={self.ui_port} is already the metrics or "
                                f"health port: give the study browser a port of its own")
        if self.log_format not in ("json", "plain"):
            raise SettingsError(f"{_env('log_format')} must be json or plain, got {self.log_format!r}")

    @staticmethod
    def documentation() -> list[tuple[str, str]]:
        """(environment variable, default) pairs, for --help and the docs."""
        out = []
        for f in fields(OperatorSettings):
            default = f.default if f.default_factory is dataclass_missing else "(pod name / pid)"
            if isinstance(default, tuple):
                default = ",".join(default) or "(all)"
            out.append((_env(f.name), str(default)))
        return out



def _parse(name: str, raw: str, kind: object) -> object:
    kind = str(kind)
    try:
        if kind.startswith("tuple"):
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{_env(name)}={raw!r}: {exc}") from None
