"""`ftscale toy`: build or list the offline tiny world (ftscale_trainer.toy / .world)."""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
The offline tiny world the demo and the tests use: real English/German/French text from
Debian's package-description translations (fetched through apt into a private folder), a BPE
tokenizer, and a family of small Llama-style models pretrained on it, with intermediate
checkpoints. Everything lands in $FTSCALE_CACHE/toy/<version>/ (default ~/.cache/ftscale).

  ftscale toy build          build what is missing (idempotent; ~5 min on 2 idle cores)
  ftscale toy build --force  rebuild from scratch
  ftscale toy list           the models (with non-embedding parameters and checkpoints) and tasks
  ftscale toy list --json    the same as JSON, for scripts

In a study, refer to models as `toy:<name>` (final checkpoint) or `toy:<name>@<tokens>`
(intermediate checkpoint), and to tasks by name: toy-en-de, toy-en-fr, toy-fr-de, toy-sum.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="toy_command", metavar="ACTION")
    build = sub.add_parser("build", help="build (or finish building) the tiny world")
    build.add_argument("--force", action="store_true", help="delete and rebuild everything")
    build.add_argument("--workers", type=int, default=None,
                       help="pretraining processes (default: one per core, at most 4)")
    listing = sub.add_parser("list", help="list the built models and tasks")
    listing.add_argument("--json", action="store_true", help="print JSON")


def main(args: argparse.Namespace) -> int:
    from ftscale_trainer import world

    if args.toy_command == "build":
        from ftscale_trainer import toy

        root = toy.build(force=args.force, workers=args.workers)
        print(toy.describe(root))
        return 0
    if args.toy_command == "list":
        try:
            models = world.family()
        except world.WorldError as exc:
            print(f"ftscale toy: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps({
                "root": world.world_dir(),
                "models": [{"source": f"toy:{m.name}", "non_embedding_params": m.non_embedding_params,
                            "total_params": m.total_params,
                            "checkpoints": [{"source": f"toy:{m.name}@{c.tokens}", "tokens": c.tokens,
                                             "dev_loss": c.dev_loss} for c in m.checkpoints]}
                           for m in models],
                "tasks": list(world.TASKS)}, indent=2))
        else:
            from ftscale_trainer import toy

            print(toy.describe())
        return 0
    print("ftscale toy: choose an action: build or list (see ftscale toy --help)", file=sys.stderr)
    return 2
