"""`ftscale fit TABLE`: fit scaling laws to any results table (thin entry over ftscale.law)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DESCRIPTION = """\
Fit scaling laws to a table of finetuning runs and print the fitted laws.

Forms (Zhang et al., ICLR 2024):
  multiplicative  L = A·X^-alpha·D^-beta + E      (the paper's Eq. 1, default)
  additive        L = A·X^-alpha + B·D^-beta + E  (Chinchilla-style alternative)
  single          L = A·D^-beta + E, one fit per X value
  all             all three
  rectified       L = (B/(D_l + D^beta) + E)^alpha (Lin et al., ICML 2024), one fit per
                  model (--group-by, default the `model` column), compared with the plain
                  power law L = B·D^-beta + E by held-out error (docs/law.md §10)

The objective is the Huber loss (delta 1e-3) summed over seed-averaged points, on raw
residuals as in the paper (--residual log for Chinchilla's). Points whose X or D is a held-out
value (default: the largest X and the largest D) are left out of the fit and scored as
Delta_held-out (mean absolute deviation). Intervals are bootstrap percentiles over runs.
With --group-by, each group is fitted separately and the critical data size at which two
groups (e.g. methods) predict equal loss is reported for every X.

TABLE is CSV (header row), JSONL, or a JSON list. Run-result documents written by ftscale
are understood as they are (failed runs are skipped and counted).

examples:
  ftscale fit results.jsonl --group-by method
  ftscale fit runs.csv --x params --d examples --loss nll --form all --holdout none
  ftscale fit results.jsonl --group-by method --x pretrain_tokens --holdout x=209e9,d=largest
  ftscale fit results.jsonl --group-by method --json > fit.json --plot plots/

Every law carries diagnostic flags (docs/law.md §9: a parameter at a bound, an interval of
zero width or spanning more than a decade, A and alpha trading off, a flat law, held-out
error far above the fit error, no convergence); they are printed under the table and in
--json as "flags".

exit codes: 0 every fit converged (read the flags); 1 a fit failed or did not converge (the
results are still printed, marked); 2 bad input, or a table whose design cannot separate the
law's exponents (one X value, D proportional to X): the message says what to fix or add.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("table", help="results table: CSV, JSONL or JSON list")
    p.add_argument("--form", default="multiplicative",
                   choices=["multiplicative", "additive", "single", "all", "rectified"],
                   help="law form to fit (default multiplicative)")
    p.add_argument("--x", default="model_params", metavar="COL",
                   help="column of the X factor (default model_params; e.g. pretrain_tokens, "
                   "pet_size)")
    p.add_argument("--d", default="data_size", metavar="COL",
                   help="column of the finetuning data size (default data_size)")
    p.add_argument("--loss", default="test_loss", metavar="COL",
                   help="column of the loss to fit, nats (default test_loss)")
    p.add_argument("--group-by", default="", metavar="COLS",
                   help="comma-separated columns; one fit per group (e.g. method or "
                   "method,pet_size) and critical data sizes between groups")
    p.add_argument("--residual", default="raw", choices=["raw", "log"],
                   help="Huber on L̂ − L (raw, paper Eq. 2, default) or log L̂ − log L")
    p.add_argument("--delta", default=1e-3, type=float, metavar="F",
                   help="Huber delta (default 1e-3)")
    p.add_argument("--holdout", default="largest", metavar="SPEC",
                   help="held-out values: largest (default), none, 'x=largest,d=none', "
                   "'x=209e9/283e9,d=largest', or a JSON object")
    p.add_argument("--bootstrap", default=200, type=int, metavar="N",
                   help="bootstrap resamples of runs for intervals (default 200; 0 = off)")
    p.add_argument("--seed", default=0, type=int, metavar="S", help="bootstrap seed (default 0)")
    p.add_argument("--confidence", default=0.95, type=float, metavar="C",
                   help="interval mass (default 0.95)")
    p.add_argument("--optimizer", default="varpro", choices=["varpro", "grid"],
                   help="start search: variable projection (default) or a multi-start grid")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of "
                   "tables")
    p.add_argument("--plot", default=None, metavar="DIR", help="write PNG charts to DIR")


def main(args: argparse.Namespace) -> int:
    from ftscale.law.errors import FitError, LawInputError

    try:
        doc, laws, text = run_fit(args)
    except LawInputError as exc:
        print(f"ftscale fit: error: {exc}", file=sys.stderr)
        return 2
    except FitError as exc:
        print(f"ftscale fit: fit failed: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True, allow_nan=False))
    else:
        print(text)
    for note in doc.get("notes", ()):
        print(f"ftscale fit: note: {note}", file=sys.stderr)
    if args.plot:
        from ftscale.law.plots import plot_critical_sets, plot_laws

        paths = plot_laws(laws, args.plot)
        paths += plot_critical_sets(doc["critical_data_sizes"], args.plot)
        print(f"wrote {len(paths)} chart(s) to {args.plot}", file=sys.stderr)
    failed = [law for law in laws if not law.convergence.converged]
    if failed:
        print(f"ftscale fit: {len(failed)} fit(s) did not converge: " + ", ".join(
            _law_name(law) for law in failed) + "; their parameters are not a minimum "
            "(see the flags)", file=sys.stderr)
        return 1
    return 0


def _law_name(law) -> str:
    x = f" X={law.x_value:g}" if law.x_value is not None else ""
    return f"{_group_name(law.group)}/{law.form}{x}"


def run_fit(args) -> tuple[dict, list, str]:
    """Load, group, fit; returns (JSON document, fitted laws, readable text)."""
    from tqdm import tqdm

    from ftscale.law.critical import critical_entry, eq3_entry, observed_overlap
    from ftscale.law.errors import LawInputError
    from ftscale.law.fit import fit_law
    from ftscale.law.options import HoldoutSpec, LawOptions
    from ftscale.law.study import compare_forms, json_safe
    from ftscale.law.table import load_table

    table = load_table(args.table)
    forms = ["multiplicative", "additive", "single"] if args.form == "all" else [args.form]
    holdout = HoldoutSpec.parse(args.holdout)
    # validates delta/bootstrap/confidence with the same messages the CRD path gives
    # (the rectified law is no study form: the other options are validated all the same)
    opts = LawOptions(forms=("single",) if args.form == "rectified" else tuple(forms),
                      residual=args.residual, delta=args.delta,
                      holdout=holdout, bootstrap=args.bootstrap, seed=args.seed,
                      confidence=args.confidence, strategy=args.optimizer)
    group_cols = [c.strip() for c in args.group_by.split(",") if c.strip()]
    notes: list[str] = []
    if args.form == "rectified" and not group_cols and any("model" in r for r in table):
        group_cols = ["model"]  # the rectified law describes one model's curve
        notes.append("rectified law: one fit per model (--group-by model)")
    groups = group_rows(table, group_cols)
    n_fits = len(groups) * len(forms)
    laws = []
    rectified_cmp = []
    with tqdm(total=n_fits * max(1, opts.bootstrap), desc="fitting", unit="fit",
              disable=None, leave=False, file=sys.stderr) as bar:
        for key, rows in groups:
            for form in forms:
                if form == "rectified":  # ftscale.law.rectified: with the power law beside it
                    from ftscale.law.rectified import fit_compared

                    law, _power, cmp_ = fit_compared(
                        rows, d=args.d, loss=args.loss, residual=opts.residual,
                        delta=opts.delta, holdout=holdout, bootstrap=opts.bootstrap,
                        seed=opts.seed, confidence=opts.confidence, strategy=opts.strategy,
                        group=key, progress=bar.update)
                    laws.append(law)
                    rectified_cmp.append(cmp_)
                    continue
                laws += fit_law(rows, form=form, x=args.x, d=args.d, loss=args.loss,
                                residual=opts.residual, delta=opts.delta, holdout=holdout,
                                bootstrap=opts.bootstrap, seed=opts.seed,
                                strategy=opts.strategy, confidence=opts.confidence,
                                group=key, progress=bar.update, notes=notes)
                if not opts.bootstrap:
                    bar.update(1)
    critical, eq3s = [], []
    joint = [l for l in laws if l.form != "single"]
    for form in [f for f in forms if f not in ("single", "rectified")]:
        of_form = [l for l in joint if l.form == form]
        for i, l1 in enumerate(of_form):
            for l2 in of_form[i + 1:]:
                names = (_group_name(l1.group), _group_name(l2.group))
                xs = sorted({p["x"] for p in l1.points} | {p["x"] for p in l2.points})
                d_range = observed_overlap([p["d"] for p in l1.points],
                                           [p["d"] for p in l2.points])
                for x in xs:
                    critical.append({"form": form, "factor": args.x,
                                     **critical_entry(l1.params, l2.params, x, names,
                                                      l1.samples, l2.samples, opts.confidence,
                                                      d_range)})
                if form == "multiplicative":
                    e = eq3_entry(l1.params, l2.params, names, l1.samples, l2.samples,
                                  opts.confidence)
                    if e:
                        eq3s.append({"form": form, "factor": args.x, **e})
    comparison = _compare_by_group(joint, compare_forms)
    doc = json_safe({
        "schema": "ftscale.io/fit-table/v1",
        "source": str(args.table),
        "skipped_failed_runs": table.skipped_failed,
        "columns": {"x": args.x, "d": args.d, "loss": args.loss, "group_by": group_cols},
        "options": {**opts.to_spec(), "forms": forms},
        "fits": [l.to_dict() for l in laws],
        "critical_data_sizes": critical,
        "eq3": eq3s,
        "form_comparison": comparison,
        "notes": notes,
        **({"rectified_vs_power": rectified_cmp} if rectified_cmp else {}),
    })
    if rectified_cmp:
        from ftscale.law.rectified import render_comparison

        return doc, laws, "\n".join(render_comparison(laws, rectified_cmp))
    return doc, laws, render_text(doc, laws, table.skipped_failed)


def group_rows(rows, cols):
    from ftscale.law.errors import LawInputError

    if not cols:
        return [((), list(rows))]
    present = set().union(*(r.keys() for r in rows))
    for c in cols:
        if c not in present:
            raise LawInputError(f"--group-by: no column {c!r} in the table; columns are: "
                                f"{', '.join(sorted(present)[:12])}")
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault(tuple((c, r.get(c)) for c in cols), []).append(r)
    return sorted(groups.items(), key=lambda kv: str(kv[0]))


def _group_name(group) -> str:
    return ",".join(str(v) for _, v in group) or "all"


def _compare_by_group(laws, compare_forms):
    # compare_forms keys on (method, factor); give each group a method-like label
    from dataclasses import replace

    relabelled = [replace(l, group=(("method", _group_name(l.group)),)) for l in laws]
    return compare_forms(relabelled)


def _fmt(v, digits=5):
    if v is None:
        return "–"
    return f"{v:.{digits}g}"


def render_text(doc, laws, skipped) -> str:
    lines = []
    if skipped:
        lines.append(f"skipped {skipped} failed run(s)")
    header = ["group", "form", "X", "A", "alpha", "beta", "E", "B", "Δ_fit", "Δ_held-out",
              "points", "converged"]
    rows = []
    for law in laws:
        v = law.params.values()

        def ci(k):
            iv = law.intervals.get(k)
            base = _fmt(v.get(k))
            return f"{base} [{_fmt(iv[0], 3)}, {_fmt(iv[1], 3)}]" if iv else base

        rows.append([_group_name(law.group), law.form,
                     _fmt(law.x_value) if law.x_value is not None else "all",
                     ci("A"), ci("alpha") if "alpha" in v else "–", ci("beta"), ci("E"),
                     ci("B") if "B" in v else "–", _fmt(law.delta_fit, 4),
                     _fmt(law.delta_heldout, 4), f"{law.n_fit}+{law.n_heldout}",
                     "yes" if law.convergence.converged else
                     f"NO ({law.convergence.message[:30]})"])
    lines += _table(header, rows)
    boot = next((l.bootstrap for l in laws if l.bootstrap), None)
    if boot:
        lines.append(f"[lo, hi]: {boot.level:.0%} bootstrap percentile intervals, "
                     f"{boot.requested} resamples of runs (seed {boot.seed}); points: fit+held-out")
    flagged = [l for l in laws if l.flags]
    if flagged:
        lines.append("")
        lines.append("flags (docs/law.md §9; a flagged law's numbers are not to be trusted as they "
                     "stand):")
        for law in flagged:
            for f in law.flags:
                lines.append(f"  {_law_name(law)}: {f.label()}: {f.message}")
    edges = [l for l in laws if l.convergence.start_on_grid_edge]
    if edges:
        lines.append("note: the best start of " + ", ".join(
            f"{_group_name(l.group)}/{l.form}" for l in edges) + " lay on the edge of the start "
            "grid; the optimum may lie outside the usual exponent range")
    crit = doc["critical_data_sizes"]
    if crit:
        lines.append("")
        lines.append("critical data size (equal predicted loss):")
        crows = []
        for c in crit:
            pair = " vs ".join(c["methods"])
            if c.get("equal_everywhere"):
                crows.append([c["form"], pair, _fmt(c["x"]), "no crossing", "–",
                              "equal everywhere"])
            elif c["no_crossing"]:
                crows.append([c["form"], pair, _fmt(c["x"]), "no crossing", "–",
                              f"{c['better_everywhere']} better everywhere"])
            for r in c["crossings"]:
                iv = r.get("interval")
                mark = "" if r.get("within_observed_range", True) else " (extrapolated)"
                crows.append([c["form"], pair, _fmt(c["x"]), _fmt(r["data_size"]) + mark,
                              f"[{_fmt(iv[0], 3)}, {_fmt(iv[1], 3)}]" if iv else "–",
                              f"{r['better_below']} below, {r['better_above']} above"])
        lines += _table(["form", "groups", "X", "D_crit", "interval", "which is better"], crows)
    for e in doc["eq3"]:
        lines.append(f"Eq. 3 {' vs '.join(e['methods'])}: log10 H = {_fmt(e['log10_H'])}, "
                     f"gamma = {_fmt(e['gamma'])}")
    cmp_ = doc["form_comparison"]
    if cmp_.get("better_form"):
        lines.append(f"held-out MAD: multiplicative {_fmt(cmp_['mean_heldout_multiplicative'], 4)}"
                     f" vs additive {_fmt(cmp_['mean_heldout_additive'], 4)} → "
                     f"{cmp_['better_form']} extrapolates better")
    return "\n".join(lines)


def _table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else \
        [len(h) for h in header]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    return [fmt.format(*header), fmt.format(*["-" * w for w in widths])] + \
        [fmt.format(*r) for r in rows]
