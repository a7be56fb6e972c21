"""The rectified finetuning law of Lin et al. (ICML 2024) next to the plain power law, and model
selection from runs on small data subsets (docs/law.md §10).

    rectified:   L(D) = (B / (D_l + D^β) + E)^α      (one model; D_l: pre-learned data size)
    power law:   L(D) = B·D^−β + E                   (the engine's single-variable law)

For D^β ≪ D_l the rectified law is flat (the "pre-power phase": the model has in effect already
seen ~D_l^(1/β) examples of the task); for D^β ≫ D_l it is the vanilla (B·D^−β + E)^α. Both are
fitted by the engine (ftscale.law.fit.fit_law, the same Huber objective) on the same held-out
split, and compared by Δ_held-out.

Model selection (`ftscale recommend --models`): candidate checkpoints, each finetuned on a few
growing subsets of the task's data up to a fraction of the target data size; each candidate's
law is fitted on its own subsets and extrapolated to the target D, and the candidates are ranked
by that prediction. Lin et al.'s "accept then stop" fits a line to the power-phase subsets it
accepts; here the rectified law takes the place of that line, as it describes both phases.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ftscale.law.errors import LawInputError
from ftscale.law.fit import FittedLaw, fit_law, percentile_interval
from ftscale.law.model import RECTIFIED, SINGLE
from ftscale.law.predict import winner_share
from ftscale.law.table import run_arrays

POWER = "power"
LARGEST_SUBSET = "largest_subset"
# What a candidate's prediction rests on, best first: the rectified law needs 6 distinct data
# sizes (5 parameters), the power law 4 (3 parameters); with fewer, the loss at the largest
# subset is all there is.
BASES = (RECTIFIED, POWER, LARGEST_SUBSET)


# ---- one model: rectified vs power law ------------------------------------------------------

def fit_compared(rows: Sequence[Mapping], *, d: str = "data_size", loss: str = "test_loss",
                 residual: str = "raw", delta: float = 1e-3, holdout="largest",
                 bootstrap: int = 0, seed: int = 0, confidence: float = 0.95,
                 strategy: str = "varpro", group=(), progress=None
                 ) -> tuple[FittedLaw, FittedLaw | None, dict]:
    """The rectified law and the plain power law fitted to one model's runs on the same
    held-out split (the d part of `holdout`; default the largest data size).

    Returns (rectified law, power law or None when it could not be fitted, comparison):
    comparison = {"group", "rectified": {...}, "power": {...}, "better"} with each law's
    Δ_fit, Δ_held-out, convergence and flag codes, and "better" the form with the lower
    Δ_held-out (None without held-out points or on a tie). Raises LawInputError when the
    rectified law cannot be fitted (fewer than 6 distinct data sizes after the split).
    """
    common = dict(d=d, loss=loss, residual=residual, delta=delta, holdout=holdout,
                  bootstrap=bootstrap, seed=seed, confidence=confidence, strategy=strategy,
                  group=group, progress=progress)
    rect = fit_law(rows, form=RECTIFIED, x=None, **common)[0]
    try:
        power = fit_law(rows, form=SINGLE, x=None, **common)[0]
    except LawInputError:
        power = None
    return rect, power, comparison(rect, power)


def _summary(law: FittedLaw | None) -> dict | None:
    if law is None:
        return None
    return {"delta_fit": law.delta_fit, "delta_heldout": law.delta_heldout,
            "bias_heldout": law.bias_heldout, "converged": law.convergence.converged,
            "flags": [f.code for f in law.flags]}


def comparison(rect: FittedLaw, power: FittedLaw | None) -> dict:
    """Which of the two forms extrapolates better to the held-out runs (lower Δ_held-out)."""
    better = None
    if power is not None and rect.delta_heldout is not None \
            and power.delta_heldout is not None:
        if rect.delta_heldout < power.delta_heldout:
            better = RECTIFIED
        elif power.delta_heldout < rect.delta_heldout:
            better = POWER
    return {"group": {k: v for k, v in rect.group}, "rectified": _summary(rect),
            "power": _summary(power), "better": better}


def render_comparison(laws: Sequence[FittedLaw], comparisons: Sequence[dict]) -> list[str]:
    """Text lines for `ftscale fit --form rectified`: each model's rectified law and how its
    held-out error compares with the plain power law's."""
    lines = ["rectified law L = (B/(D_l + D^β) + E)^α (Lin et al.) vs power law L = B·D^-β + E:"]
    header = ["group", "B", "D_l", "E", "alpha", "beta", "knee D_l^(1/β)", "Δ_fit",
              "Δ_held-out", "power Δ_held-out", "better", "converged"]
    rows = []
    for law, cmp_ in zip(laws, comparisons):
        v = law.params.values()
        knee = math.exp(law.params.log_D_l / law.params.beta) if law.params.beta > 0 else None
        power = cmp_["power"]
        rows.append([law.label, _g(v["B"]), _g(v["D_l"]), _g(v["E"]), _g(v["alpha"]),
                     _g(v["beta"]), _g(knee), _g(law.delta_fit, 4), _g(law.delta_heldout, 4),
                     _g(power["delta_heldout"], 4) if power else "not fitted",
                     cmp_["better"] or "–", "yes" if law.convergence.converged else "NO"])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join("{:<%d}" % w for w in widths)
    lines += [fmt.format(*header), fmt.format(*["-" * w for w in widths])]
    lines += [fmt.format(*r) for r in rows]
    lines.append("better: the form with the lower held-out error (the largest data size by "
                 "default); knee: where the pre-power phase gives way to the power phase")
    flagged = [law for law in laws if law.flags]
    if flagged:
        lines += ["", "flags (docs/law.md §9):"]
        lines += [f"  {law.label}: {f.label()}: {f.message}" for law in flagged for f in law.flags]
    return lines


def _g(v, digits: int = 5) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


# ---- many models: rank candidates for a target data size ---------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One candidate model's runs on its subsets and what they predict at the target D."""

    model: str
    basis: str  # rectified | power | largest_subset: what the prediction rests on
    predicted: float  # predicted loss at the target D (nats)
    interval: tuple[float, float] | None  # bootstrap percentile interval of that prediction
    power_predicted: float | None  # the plain power law's prediction (None: not fitted)
    largest_subset: float  # seed-mean loss at the largest subset
    largest_d: float  # that subset's size
    n_data_sizes: int
    converged: bool
    flags: tuple[str, ...]
    replicate_predictions: tuple[float, ...] = ()  # per bootstrap replicate (nan = dropped)

    def to_dict(self) -> dict:
        return {"model": self.model, "basis": self.basis, "predicted_loss": self.predicted,
                "interval": list(self.interval) if self.interval else None,
                "power_law_predicted_loss": self.power_predicted,
                "largest_subset_loss": self.largest_subset,
                "largest_subset_size": self.largest_d, "data_sizes": self.n_data_sizes,
                "converged": self.converged, "flags": list(self.flags)}


def split_by_model(rows: Sequence[Mapping], model_column: str = "model",
                   method: str | None = None) -> dict[str, list[Mapping]]:
    """The rows of each candidate model. Rows of other methods are left out when `method` is
    given; a model whose rows mix methods or PET sizes is refused (its runs would not lie on
    one curve)."""
    if method is not None:
        rows = [r for r in rows if r.get("method") == method]
        if not rows:
            raise LawInputError(f"no rows with method={method!r}; check --method")
    by_model: dict[str, list[Mapping]] = {}
    for r in rows:
        if r.get(model_column) is None:
            raise LawInputError(f"a row has no {model_column!r}; every row needs the candidate "
                                "model's name (or name the column with --model-column)")
        by_model.setdefault(str(r[model_column]), []).append(r)
    for name, rs in by_model.items():
        for col, flag in (("method", "--method"), ("pet_size", "--method (one PET size)")):
            values = {r.get(col) for r in rs}
            if len(values) > 1:
                raise LawInputError(
                    f"model {name}: its rows mix {col} values {sorted(map(str, values))}; one "
                    f"curve per model is needed — filter with {flag} or split the table")
    if len(by_model) < 2:
        raise LawInputError(f"{len(by_model)} candidate model(s) in the table; recommend "
                            "--models ranks two or more")
    return by_model


def candidate(model: str, rows: Sequence[Mapping], target_d: float, *, d: str = "data_size",
              loss: str = "test_loss", bootstrap: int = 0, seed: int = 0,
              confidence: float = 0.95, delta: float = 1e-3) -> Candidate:
    """Fit one candidate's subsets (every subset is used: nothing held out) and predict its loss
    at target_d with the richest law its data support (BASES)."""
    runs = run_arrays(rows, None, d, loss, what=f"model {model}")
    sizes = np.unique(runs.d)
    top = float(sizes.max())
    largest = float(np.mean(runs.loss[runs.d == top]))
    common = dict(d=d, loss=loss, delta=delta, holdout="none", bootstrap=bootstrap,
                  seed=seed, confidence=confidence, group=(("model", model),))
    power_pred = None
    power_law = None
    try:
        power_law = fit_law(rows, form=SINGLE, x=None, **common)[0]
        power_pred = float(power_law.params.predict(1.0, target_d))
    except LawInputError:
        pass
    law = None
    try:
        law = fit_law(rows, form=RECTIFIED, x=None, **common)[0]
        basis = RECTIFIED
    except LawInputError:
        law, basis = power_law, POWER
    if law is None:
        return Candidate(model, LARGEST_SUBSET, largest, None, None, largest, top,
                         int(sizes.size), True, ())
    predicted = float(law.params.predict(1.0, target_d))
    reps = tuple(float(s.predict(1.0, target_d)) if s is not None else math.nan
                 for s in law.samples)
    interval = percentile_interval(reps, confidence) if reps else None
    return Candidate(model, basis, predicted, interval, power_pred, largest, top,
                     int(sizes.size), law.convergence.converged,
                     tuple(f.code for f in law.flags), reps)


def rank_models(rows: Sequence[Mapping], target_d: float, *, model_column: str = "model",
                method: str | None = None, d: str = "data_size", loss: str = "test_loss",
                bootstrap: int = 0, seed: int = 0, confidence: float = 0.95) -> dict:
    """Rank candidate models by predicted loss at target_d (lowest first).

    Returns {"target_data_size", "ranking": [Candidate.to_dict() ...], "by_power_law": [...],
    "by_largest_subset": [...], "winner_share": share of bootstrap replicates in which the
    winner's prediction is the lowest (None without bootstrap), "largest_fraction": the largest
    subset of any candidate as a fraction of target_d, "notes"}. Raises LawInputError for a
    table that does not hold two candidates' curves.
    """
    if not (isinstance(target_d, (int, float)) and target_d > 0 and math.isfinite(target_d)):
        raise LawInputError(f"the target data size must be a positive number, got {target_d!r}")
    by_model = split_by_model(rows, model_column, method)
    cands = [candidate(m, rs, target_d, d=d, loss=loss, bootstrap=bootstrap, seed=seed,
                       confidence=confidence) for m, rs in sorted(by_model.items())]
    ranked = sorted(cands, key=lambda c: c.predicted)
    notes = []
    for c in cands:
        if c.basis != RECTIFIED:
            by = "power law" if c.basis == POWER else "loss at its largest subset"
            notes.append(f"{c.model}: {c.n_data_sizes} data size(s), too few for the rectified "
                         f"law (6); ranked by the {by}")
        if not c.converged or c.flags:
            notes.append(f"{c.model}: its {c.basis} fit is flagged ({', '.join(c.flags)}); "
                         "read its prediction with care")
    largest = max(c.largest_d for c in cands)
    return {
        "target_data_size": float(target_d),
        "ranking": [c.to_dict() for c in ranked],
        "by_power_law": [c.model for c in sorted(
            cands, key=lambda c: math.inf if c.power_predicted is None else c.power_predicted)],
        "by_largest_subset": [c.model for c in sorted(cands, key=lambda c: c.largest_subset)],
        "winner_share": winner_share([c.replicate_predictions for c in ranked]),
        "largest_fraction": largest / float(target_d),
        "notes": notes,
    }

