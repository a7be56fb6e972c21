"""`ftscale report DIR`: re-fit and re-render the report of a `ftscale run` workdir;
`ftscale report --study NS/NAME`: render the report of a study on a cluster."""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE = 0, 1, 2

DESCRIPTION = """\
Local studies: re-fit the scaling laws and re-write report.md, report.html, fit.json and
plots/ of a workdir that `ftscale run` filled — for instance after changing spec.law (forms,
held-out runs, bootstrap) in DIR/study.yaml, or while a study is still running elsewhere (the
report covers the runs finished so far). Nothing is trained.

Cluster studies (--study): read the ScalingStudy, its results ConfigMap (<name>-results) and
its fit Job's input (<name>-fit-input) through the kubeconfig, fit again with the fit Job's
own function (deterministic: the numbers of status.fit), and write report.html and report.md
into --output (default ./<name>-report/). A study that is not fitted yet gets its results so
far, its failed runs and its spec. Needs `get` on scalingstudies and configmaps in the
study's namespace.

Exit codes: 0 written; 1 the API could not be read (unreachable, forbidden); 2 bad
arguments, no such workdir or study.

Examples:
  ftscale report runs/demo
  ftscale report --study research/lora-vs-fmt
  ftscale report --study lora-vs-fmt --kubeconfig ~/.kube/prod --output /tmp/report
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", metavar="DIR", nargs="?", help="a workdir of `ftscale run`")
    parser.add_argument("--study", metavar="NS/NAME",
                        help="a ScalingStudy on a cluster (NAME alone: the kubeconfig "
                             "context's namespace)")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, "
                                             "~/.kube/config)")
    parser.add_argument("--output", "-o", metavar="DIR",
                        help="where --study writes report.html and report.md "
                             "(default ./<name>-report/)")


def parse_study_ref(text: str, default_namespace: str) -> tuple[str, str]:
    """'ns/name' → (ns, name); 'name' → (default_namespace, name). Raises ValueError."""
    parts = text.split("/")
    if len(parts) == 1 and parts[0]:
        return default_namespace, parts[0]
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1]
    raise ValueError(f"--study {text!r}: give NAMESPACE/NAME (or NAME in the kubeconfig "
                     f"context's namespace)")


def main(args: argparse.Namespace) -> int:
    if (args.workdir is None) == (args.study is None):
        print("error: give a workdir (DIR) or --study NS/NAME, not both", file=sys.stderr)
        return EXIT_USAGE
    if args.study is None:
        if args.output or args.kubeconfig:
            print("error: --output and --kubeconfig go with --study", file=sys.stderr)
            return EXIT_USAGE
        from ftscale.local.study_run import rerender

        return rerender(args.workdir)
    return cluster_report(args.study, args.kubeconfig, args.output)


def cluster_report(study: str, kubeconfig: str | None, output: str | None,
                   out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`ftscale report --study`: read, re-fit, write; prints the two paths."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    from ftscale.controller.kube import Kube, load_api_client, own_namespace
    from ftscale.report import cluster

    try:
        namespace, name = parse_study_ref(study, own_namespace(kubeconfig) if "/" not in study
                                          else "")
        kube = Kube(load_api_client(kubeconfig, pool_size=2))
    except (ValueError, ConfigException, OSError) as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE
    try:
        body = cluster.read_study(kube, namespace, name)
        inputs = cluster.load_inputs(body, cluster.kube_reader(kube))
    except cluster.StudyNotFound as exc:
        print(f"error: {exc} (kubectl get scalingstudies -n {namespace})", file=err)
        return EXIT_USAGE
    except ApiException as exc:
        hint = (f": your user needs get on scalingstudies and configmaps in {namespace}"
                if exc.status == 403 else "")
        print(f"error: cannot read study {namespace}/{name}: {exc.reason}{hint}", file=err)
        return EXIT_API_ERROR
    except (OSError, HTTPError, ValueError) as exc:  # unreachable; a fit input not JSON
        print(f"error: cannot read study {namespace}/{name}: {exc}", file=err)
        return EXIT_API_ERROR
    for note in inputs.notes:
        print(f"note: {note}", file=out)
    html, md = cluster.write_report(output or cluster.default_output(name), inputs)
    print(f"report: {html.resolve()}", file=out)
    print(f"report: {md.resolve()}", file=out)
    return EXIT_OK
