"""`ftscale` command line. Each subcommand lives in ftscale.commands.<name> and exposes
HELP (one line), DESCRIPTION (the --help text), add_arguments(parser) and main(args) -> int.
Imports are lazy so that `ftscale fit` never pays for torch and `--help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# (subcommand, module, one-line help). Order is the order `ftscale --help` lists them.
COMMANDS = [
    ("run", "ftscale.commands.run", "run a ScalingStudy on this machine, resumably, and report"),
    ("fit", "ftscale.commands.fit", "fit scaling laws to a table of run results (CSV or JSONL)"),
    ("plan", "ftscale.commands.plan", "print what a study will cost: FLOPs, GPU-hours, memory"),
    ("predict", "ftscale.commands.predict", "predicted loss at (X, D) from a fit, with its interval"),
    ("recommend", "ftscale.commands.recommend",
     "rank methods (or candidate models) by predicted loss at (X, D)"),
    ("report", "ftscale.commands.report", "render a study's report: a `ftscale run` workdir, or --study on a cluster"),
    ("toy", "ftscale.commands.toy", "build the offline tiny world (data, tokenizer, models)"),
    ("operator", "ftscale.commands.operator", "run the Kubernetes operator (kopf)"),
]


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftscale",
        description="Run LLM finetuning scaling studies and fit their scaling laws "
        "(L = A·X^-α·D^-β + E, Zhang et al., ICLR 2024).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, module, help_text in COMMANDS:
        if name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(module)
        p = sub.add_parser(
            name, help=help_text, description=getattr(mod, "DESCRIPTION", help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 0 if args.command is None else 2
    return int(args._main(args) or 0)
