"""`ftscale report DIR`: re-fit and re-render the report of a `ftscale run` workdir."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Re-fit the scaling laws and re-write report.md, fit.json and plots/ of a workdir that
`ftscale run` filled — for instance after changing spec.law (forms, held-out runs, bootstrap)
in DIR/study.yaml, or while a study is still running elsewhere (the report covers the runs
finished so far). Nothing is trained.

Example:
  ftscale report runs/demo
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workdir", metavar="DIR", help="a workdir of `ftscale run`")


def main(args: argparse.Namespace) -> int:
    from ftscale.local.study_run import rerender

    return rerender(args.workdir)
