"""`ftscale run STUDY.yaml`: the local executor (the embedded default, no cluster needed)."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Run a ScalingStudy on this machine: validate the manifest against the CRD (the same file you
would `kubectl apply`), run every run of its grid as a trainer subprocess (in parallel, by the
GPUs or CPU cores available), then fit the scaling laws and write the report.

Resumable: finished runs are kept in the workdir and skipped when you run the same command
again; runs that were interrupted (Ctrl-C, crash) start over, or resume from the checkpoint
the trainer saved when it was stopped; an unreadable result file is reported, moved aside and
its run redone, never used. Editing the study between runs is fine as long as it
only grows the grid (more models, sizes, data sizes, seeds) or changes execution/law settings;
edits that would mix incomparable results (task, training, evaluation, a model's source) are
refused.

The workdir holds:
  report.md          results table, fitted laws with intervals, Δ_fit/Δ_held-out,
                     multiplicative vs additive, critical data sizes, findings in plain words
  fit.json           the full fit (unrounded parameters, bootstrap intervals, convergence)
  plots/*.png        the methods compared on each model; each fitted law against its runs;
                     critical data sizes
  results.jsonl      one result per run (input for `ftscale fit`)
  runs/<id>/         each run's config.json, train.log and result.json

Examples:
  ftscale run examples/demo-study.yaml
  ftscale run study.yaml --workdir /scratch/my-study --parallel 4 --metrics-port 9400
  ftscale run study.yaml --dry-run          # show what would run, start nothing

One `ftscale run` per workdir: a second one refuses with the first one's PID. Ctrl-C or
SIGTERM stops every trainer (SIGTERM, then SIGKILL after FTSCALE_STOP_GRACE_SECONDS, default
15, or at once on a second Ctrl-C).

Exit codes: 0 all runs succeeded and the report is written; 1 some runs failed (the report
covers the rest); 2 the study or workdir is invalid, or the workdir is in use (nothing ran);
130 interrupted by Ctrl-C, 143 by SIGTERM (resumable).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("study", metavar="STUDY.yaml", help="a ScalingStudy manifest")
    parser.add_argument("--workdir", metavar="DIR",
                        help="where runs, results and the report go "
                             "(default: ./runs/<study name>)")
    parser.add_argument("--parallel", type=int, metavar="N",
                        help="runs at once (default: one per GPU, or one per CPU core, "
                             "capped by spec.execution.maxParallelRuns)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="run failed runs again (by default a failed run stays failed)")
    parser.add_argument("--cpu", action="store_true", help="ignore GPUs, run on CPU")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the runs that would start; start nothing")
    parser.add_argument("--no-report", action="store_true",
                        help="only run; fit and report later with `ftscale report DIR`")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics (ftscale_study_*, namespace=\"local\") "
                             "on 127.0.0.1:PORT while running")
    parser.add_argument("--data-root", metavar="DIR",
                        help="base of relative task.data paths (default: the study file's folder)")
    parser.add_argument("--models-root", metavar="DIR",
                        help="where relative model sources are looked up before the study "
                             "file's folder (e.g. a folder of Hugging Face checkpoints)")


def main(args: argparse.Namespace) -> int:
    from ftscale.local.study_run import run_study

    if args.parallel is not None and args.parallel < 1:
        print("error: --parallel must be at least 1")
        return 2
    return run_study(args.study, workdir=args.workdir, parallel=args.parallel,
                     retry_failed=args.retry_failed, use_gpus=not args.cpu,
                     dry_run=args.dry_run, fit=not args.no_report,
                     metrics_port=args.metrics_port, data_root=args.data_root,
                     models_root=args.models_root)
