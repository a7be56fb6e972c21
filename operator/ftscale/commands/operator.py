"""`ftscale operator`: run the ScalingStudy operator (kopf) against a cluster."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging

from ftscale.controller.settings import OperatorSettings, SettingsError

DESCRIPTION = """\
Run the ScalingStudy operator: for every ScalingStudy it creates one batch/v1 Job per run
(up to spec.execution.maxParallelRuns), harvests each run's result from its pod's termination
message into status.results, and when every run is terminal runs the fit Job, whose summary
lands in status.fit (conditions Progressing, Succeeded/Failed, Fitted, Degraded).

Credentials: in a pod, its service account; elsewhere --kubeconfig, $KUBECONFIG or
~/.kube/config. Any number of replicas is safe: they elect a leader through a Lease
(--lease-namespace/--lease-name) and only the leader acts.

Endpoints: /metrics on --metrics-port (Prometheus), /healthz on --health-port (kopf's
liveness probe, with the leader flag), and with --ui-port a read-only study browser (every
study's progress, runs, fit and report; docs/cluster-install.md, "The study browser").

Every option can also be set by an environment variable (the Helm chart does so):
{env}

Examples:
  ftscale operator --kubeconfig ~/.kube/config --namespace research
  FTSCALE_TRAINER_IMAGE=registry.example/ftscale-trainer:0.1 ftscale operator
"""


def _env_table() -> str:
    return "\n".join(f"  {name:<40} default {default}" for name, default in OperatorSettings.documentation())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION.format(env=_env_table())
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--namespace", "-n", action="append", dest="namespaces", default=None,
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--metrics-port", type=int, help="Prometheus /metrics port (0: off; default 8080)")
    parser.add_argument("--metrics-bind-address",
                        help="address /metrics binds (default 0.0.0.0; 127.0.0.1 on a workstation)")
    parser.add_argument("--health-port", type=int, help="liveness /healthz port (0: off; default 8081)")
    parser.add_argument("--health-bind-address", help="address /healthz binds (default 0.0.0.0)")
    parser.add_argument("--ui-port", type=int,
                        help="port of the read-only study browser (0: off, the default)")
    parser.add_argument("--ui-bind-address",
                        help="address the study browser binds (default 127.0.0.1)")
    parser.add_argument("--ui-grafana-url",
                        help="Grafana base URL the study pages link to (default: no link)")
    parser.add_argument("--no-leader-election", action="store_true",
                        help="act without holding the Lease (only for a single replica)")
    parser.add_argument("--lease-namespace",
                        help="namespace of the leader-election Lease (default: the operator's "
                             "own: its pod's namespace, else the kubeconfig context's)")
    parser.add_argument("--lease-name", help="name of the leader-election Lease")
    parser.add_argument("--identity", help="this replica's identity in the Lease (default: $HOSTNAME)")
    parser.add_argument("--trainer-image", help="trainer image for studies without spec.execution.image")
    parser.add_argument("--log-format", choices=("json", "plain"), help="log format (default json)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    """Environment first, then the flags that were given (flags win)."""
    settings = OperatorSettings.from_env()
    over = {}
    for name in ("metrics_port", "health_port", "metrics_bind_address", "health_bind_address",
                 "lease_namespace", "lease_name", "identity", "trainer_image", "log_format",
                 "ui_port", "ui_bind_address", "ui_grafana_url"):
        value = getattr(args, name, None)
        if value is not None:
            over[name] = value
    if args.namespaces:
        over["namespaces"] = tuple(args.namespaces)
    if args.no_leader_election:
        over["leader_election"] = False
    if args.verbose:
        over["log_level"] = "DEBUG"
    settings = dataclasses.replace(settings, **over)
    settings.check()
    return settings


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_args(args)
    except SettingsError as exc:
        print(f"ftscale operator: {exc}")
        return 2
    import kopf  # imported late: `ftscale --help` stays fast

    from ftscale.controller import handlers

    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger().setLevel(settings.log_level)
    if settings.log_level != "DEBUG":
        # kopf logs every handled watch event ("Handler ... succeeded") at INFO: thousands of
        # lines per study. Keep its warnings and errors; our own logs say what happened.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
        # Each liveness probe would log twice (the probe activity and the HTTP access line).
        logging.getLogger("kopf.activities.probe").setLevel(logging.WARNING)
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    handlers.configure(settings, args.kubeconfig)
    liveness = (f"http://{settings.health_bind_address}:{settings.health_port}/healthz"
                if settings.health_port else None)
    asyncio.run(kopf.operator(
        standalone=True,  # no KopfPeering: replicas coordinate through our Lease instead
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        liveness_endpoint=liveness,
    ))
    return 0
