"""`ftscale recommend`: which method (and PET size) to use at model size X and data size D
from a finished fit, or — with --models — which candidate model to finetune for a data size
from runs on small subsets (thin entry over ftscale.law.predict and ftscale.law.rectified)."""

from __future__ import annotations

import argparse
import json
import sys

from ftscale.commands.predict import add_source_arguments, load_entries

DESCRIPTION = """\
Rank what to finetune with, by predicted test loss.

Methods (FIT or --study): every method's fitted law (default: multiplicative, model-size
factor) predicts the loss at X and D; methods are ranked with 95% bootstrap intervals, the
critical data size between the best two at X says where their order flips, and the share of
bootstrap replicates in which the winner stays best says how sure the ranking is. PET methods
with a pet_size law also get their PET sizes ranked (at the model their size sweep ran on).
A cluster study's status.fit has no replicates: then point estimates only, and it says so.

Models (--models RESULTS): candidate checkpoints, each finetuned on a few subsets of the data
(e.g. 200, 400, ... up to a tenth of the target D). Each candidate's rectified law
(Lin et al., ICML 2024: L = (B/(D_l + D^β) + E)^α) is fitted to its subsets and extrapolated to
--d; candidates are ranked by that prediction, beside the rankings by the plain power law and
by the loss at the largest subset. RESULTS is a results table (a workdir's results.jsonl, or
CSV/JSONL as `ftscale fit` reads it) with a `model` column and one curve per model.

examples:
  ftscale recommend runs/demo --x 7e9 --d 50000
  ftscale recommend --study default/demo --x 7e9 --d 50000 --json
  ftscale recommend --models subsets.csv --d 1.6e6
  ftscale recommend --models runs/pool/results.jsonl --method fmt --d 1e6 --bootstrap 100

exit codes: 0 ranked; 2 bad input (no laws, too few candidates, unreadable fit or table).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--models", default=None, metavar="RESULTS",
                   help="rank candidate models from their subset runs in this results table")
    p.add_argument("--x", type=float, default=None, metavar="X",
                   help="model size (or the factor's value) to recommend a method for")
    p.add_argument("--d", type=float, required=True, metavar="D",
                   help="finetuning data size (examples): the target")
    p.add_argument("--factor", default=None, help="law factor (default model_size)")
    p.add_argument("--form", default="multiplicative", choices=["multiplicative", "additive"],
                   help="law form for methods (default multiplicative)")
    p.add_argument("--method", default=None,
                   help="--models: use only this method's rows")
    p.add_argument("--model-column", default="model", metavar="COL",
                   help="--models: column naming the candidate (default model)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="--models: bootstrap resamples for intervals (default 0: none)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def main(args: argparse.Namespace) -> int:
    from ftscale.law.errors import LawInputError
    from ftscale.law.study import json_safe

    try:
        if args.models is not None:
            doc = _models(args)
            text = render_models(doc)
        else:
            from ftscale.law.predict import recommend

            if args.x is None:
                raise LawInputError("--x is required to rank methods (the model size to use)")
            doc = recommend(load_entries(args), args.x, args.d, factor=args.factor,
                            form=args.form)
            text = render_methods(doc)
    except LawInputError as exc:
        print(f"ftscale recommend: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_safe(doc), indent=2, sort_keys=True, allow_nan=False))
    else:
        print(text)
    return 0


def _models(args):
    from ftscale.law.errors import LawInputError
    from ftscale.law.rectified import rank_models
    from ftscale.law.table import load_table

    if args.fit is not None or args.study is not None:
        raise LawInputError("--models ranks models from a results table; give no FIT or --study")
    if args.bootstrap < 0:
        raise LawInputError(f"--bootstrap must be ≥ 0, got {args.bootstrap}")
    return rank_models(load_table(args.models), args.d, model_column=args.model_column,
                       method=args.method, bootstrap=args.bootstrap)


def _iv(iv) -> str:
    return f"[{iv[0]:.4f}, {iv[1]:.4f}]" if iv else "–"


def _table(header, rows) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header), fmt.format(*["-" * w for w in widths])] + \
        [fmt.format(*r) for r in rows]


def render_methods(doc) -> str:
    from ftscale.law.predict import extrapolation_text

    lines = [f"methods at X={doc['x']:.4g}, D={doc['d']:.4g} ({doc['form']} laws, "
             f"factor {doc['factor']}), best first:"]
    rows = [[i + 1, p["method"], f"{p['predicted_loss']:.4f}", _iv(p["interval"]),
             extrapolation_text(p), ", ".join(p["flags"]) or "–"]
            for i, p in enumerate(doc["ranking"])]
    lines += _table(["#", "method", "loss", "interval", "extrapolation", "flags"], rows)
    share = doc["winner_share"]
    if share is not None:
        lines.append(f"{doc['winner']} is best in {share:.0%} of the bootstrap replicates")
    c = doc["critical"]
    if c:
        a, b = c["methods"]
        if c.get("equal_everywhere"):
            lines.append(f"{a} and {b} have the same law at this X")
        elif c["no_crossing"]:
            lines.append(f"critical data size {a} vs {b} at X={doc['x']:.4g}: none — "
                         f"{c['better_everywhere']} is predicted better at every data size")
        for r in c["crossings"]:
            where = "within" if r.get("within_observed_range") else "outside"
            lines.append(f"critical data size {a} vs {b} at X={doc['x']:.4g}: "
                         f"D = {r['data_size']:.4g} {_iv_g(r.get('interval'))} ({where} the "
                         f"data sizes both were run at): {r['better_below']} better below, "
                         f"{r['better_above']} above")
    for pet in doc["pet_sizes"]:
        sizes = ", ".join(f"{s['pet_size']:g}: {s['predicted_loss']:.4f}" for s in pet["sizes"])
        share = f"; best in {pet['winner_share']:.0%} of replicates" \
            if pet["winner_share"] is not None else ""
        lines.append(f"{pet['method']} PET sizes at D={doc['d']:.4g}, on its size-sweep model "
                     f"(best first): {sizes}{share}")
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)


def _iv_g(iv) -> str:
    return f"[{iv[0]:.3g}, {iv[1]:.3g}]" if iv else "(no interval)"


def render_models(doc) -> str:
    lines = [f"candidate models for D={doc['target_data_size']:.4g} (largest subset "
             f"{doc['largest_fraction']:.1%} of it), best first:"]
    rows = [[i + 1, c["model"], f"{c['predicted_loss']:.4f}", _iv(c["interval"]), c["basis"],
             "–" if c["power_law_predicted_loss"] is None
             else f"{c['power_law_predicted_loss']:.4f}",
             f"{c['largest_subset_loss']:.4f} @ {c['largest_subset_size']:g}",
             ", ".join(c["flags"]) or "–"]
            for i, c in enumerate(doc["ranking"])]
    lines += _table(["#", "model", "predicted", "interval", "law", "power law",
                     "largest subset", "flags"], rows)
    lines.append(f"recommended: {doc['ranking'][0]['model']}"
                 + (f" (best in {doc['winner_share']:.0%} of bootstrap replicates)"
                    if doc["winner_share"] is not None else ""))
    lines.append("by the power law: " + ", ".join(doc["by_power_law"]))
    lines.append("by the largest subset: " + ", ".join(doc["by_largest_subset"]))
    lines += [f"note: {n}" for n in doc["notes"]]
    return "\n".join(lines)
