"""`ftscale predict FIT --method M --x X --d D`: a fitted law's predicted loss with its
bootstrap interval (thin entry over ftscale.law.predict)."""

from __future__ import annotations

import argparse
import json
import sys

DESCRIPTION = """\
Predict the test loss of one method at model size (or other factor) X and finetuning data
size D from a finished fit, with a 95% interval from the fit's bootstrap replicates (the
percentile interval of the replicates' predictions), and say how far (X, D) lies outside the
ranges the law was fitted on, in decades.

FIT is a `ftscale run` workdir, its fit.json, or the output of `ftscale fit --json`.
--study NS/NAME reads a cluster study's status.fit through the kubeconfig instead: it keeps
parameters but no replicates, so the prediction is the point estimate without an interval.

examples:
  ftscale predict runs/demo --method lora --x 7e9 --d 50000
  ftscale predict fit.json --method prompt --factor pet_size --x 300 --d 20000 --json
  ftscale predict --study default/demo --method fmt --x 7e9 --d 50000

exit codes: 0 predicted; 2 bad input (no such law, unreadable fit, unreachable study).
"""


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """FIT or --study, shared with `ftscale recommend`."""
    p.add_argument("fit", nargs="?", default=None,
                   help="workdir, fit.json, or `ftscale fit --json` output")
    p.add_argument("--study", default=None, metavar="NS/NAME",
                   help="read a cluster study's status.fit (kubeconfig) instead of FIT")
    p.add_argument("--kubeconfig", default=None, metavar="PATH",
                   help="kubeconfig for --study (default: KUBECONFIG or ~/.kube/config)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_arguments(p)
    p.add_argument("--method", required=True, help="method (or `ftscale fit` group) to predict")
    p.add_argument("--x", required=True, type=float, metavar="X",
                   help="the factor's value: model parameters, pretraining tokens or PET size")
    p.add_argument("--d", required=True, type=float, metavar="D",
                   help="finetuning data size (examples)")
    p.add_argument("--factor", default=None,
                   help="model_size (default), pretrain_tokens or pet_size (or fit's --x column)")
    p.add_argument("--form", default="multiplicative",
                   choices=["multiplicative", "additive", "single", "rectified"],
                   help="law form (default multiplicative)")
    p.add_argument("--json", action="store_true", help="print one JSON document")


def load_entries(args):
    """The fit's laws from FIT or --study (LawInputError when neither or both are given)."""
    from ftscale.law.errors import LawInputError
    from ftscale.law.predict import load_fit, read_study_fit

    if (args.fit is None) == (args.study is None):
        raise LawInputError("give a FIT (workdir, fit.json or `ftscale fit --json` output) or "
                            "--study NS/NAME, not both")
    if args.study is not None:
        return read_study_fit(args.study, args.kubeconfig)
    return load_fit(args.fit)


def main(args: argparse.Namespace) -> int:
    from ftscale.law.errors import LawInputError
    from ftscale.law.predict import extrapolation_text, predict, select
    from ftscale.law.study import json_safe

    try:
        entry = select(load_entries(args), args.method, args.factor, args.form)
        pred = predict(entry, args.x, args.d)
    except LawInputError as exc:
        print(f"ftscale predict: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(json_safe(pred), indent=2, sort_keys=True, allow_nan=False))
        return 0
    print(render(pred) + "\n" + extrapolation_text(pred))
    return 0


def render(pred) -> str:
    """The prediction as one line, with its interval or the reason it has none."""
    where = f"{pred['method']} ({pred['form']}, {pred['factor'] or 'no factor'})"
    line = f"{where} at X={pred['x']:.4g}, D={pred['d']:.4g}: loss {pred['predicted_loss']:.4f}"
    if pred["interval"]:
        lo, hi = pred["interval"]
        line += (f" [{lo:.4f}, {hi:.4f}] ({pred['confidence_level']:.0%} bootstrap interval, "
                 f"{pred['replicates']} replicates)")
    else:
        line += f"\nno interval: {pred['note']}"
    if pred["flags"] or not pred["converged"]:
        line += ("\ncaution: the law is flagged (" + ", ".join(pred["flags"])
                 + (", not converged" if not pred["converged"] else "") + ")")
    return line
