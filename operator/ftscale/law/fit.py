"""Fitting one law to one table (`fit_law`) and the machinery the study protocol reuses:
parameters in original units, seed-averaged factor data with its held-out split, the joint
(multi-factor, shared β and E) minimisation, and bootstrap replicates over runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ftscale.law.diagnostics import Flag, check_design, law_flags
from ftscale.law.errors import FitError, LawInputError, NotIdentifiable
from ftscale.law.model import (ADDITIVE, JOINT_FORMS, MULTIPLICATIVE, RECTIFIED, SINGLE,
                               Points, layout_names)
from ftscale.law.options import AxisHoldout, HoldoutSpec, LawOptions
from ftscale.law.solver import Convergence, minimise_one_factor, polish, polish_many
from ftscale.law.table import PointSet, average_seeds, run_arrays
from ftscale.law.threads import single_threaded_blas

_LOG_MAX = 709.0  # exp() of more than this is inf in float64
# The single-variable law has 3 parameters; 4 distinct data sizes leave one degree of freedom
# to tell a fit from an interpolation.
SINGLE_MIN_DATA_SIZES = 4
# The rectified law has 5 (B, E, α, β, D_l): 6 distinct data sizes for one degree of freedom.
RECTIFIED_MIN_DATA_SIZES = 6
# Bootstrap replicates kept in fit.json (FittedLaw.to_dict) are rounded to this many significant
# digits: far below any interval's width, and a third of the bytes of full float64 text.
REPLICATE_DIGITS = 9


# ---- parameters in original units --------------------------------------------------------

@dataclass(frozen=True)
class LawParams:
    """A law in original units, kept as logs of its coefficients so nothing overflows.

    multiplicative: L = A·X^−α·D^−β + E;  additive: L = A·X^−α + B·D^−β + E;
    single: L = A·D^−β + E (alpha is 0 and unused);
    rectified (Lin et al., ICML 2024): L = (B / (D_l + D^β) + E)^α, no X (log_A is unused, nan).
    """

    form: str
    log_A: float
    alpha: float
    beta: float
    log_E: float
    log_B: float | None = None
    log_D_l: float | None = None  # the rectified law's pre-learned data size D_l

    @property
    def A(self) -> float:
        return math.exp(min(self.log_A, _LOG_MAX))

    @property
    def E(self) -> float:
        return math.exp(min(self.log_E, _LOG_MAX))

    @property
    def B(self) -> float | None:
        return None if self.log_B is None else math.exp(min(self.log_B, _LOG_MAX))

    @property
    def D_l(self) -> float | None:
        return None if self.log_D_l is None else math.exp(min(self.log_D_l, _LOG_MAX))

    def log_predict(self, x, d) -> np.ndarray:
        lx, ld = np.log(np.asarray(x, float)), np.log(np.asarray(d, float))
        if self.form == RECTIFIED:
            inner = np.logaddexp(self.log_B - np.logaddexp(self.log_D_l, self.beta * ld),
                                 self.log_E)
            return self.alpha * inner + 0.0 * lx
        if self.form == ADDITIVE:
            return np.logaddexp(np.logaddexp(self.log_A - self.alpha * lx,
                                             self.log_B - self.beta * ld), self.log_E)
        if self.form == SINGLE:
            return np.logaddexp(self.log_A - self.beta * ld + 0.0 * lx, self.log_E)
        return np.logaddexp(self.log_A - self.alpha * lx - self.beta * ld, self.log_E)

    def predict(self, x, d) -> np.ndarray:
        """Predicted loss at X = x, D = d (arrays broadcast)."""
        return np.exp(self.log_predict(x, d))

    def values(self) -> dict[str, float]:
        """The reported parameters, unrounded: A, (B), E, alpha, beta (single: no alpha;
        rectified: B, E, alpha, beta, D_l)."""
        if self.form == RECTIFIED:
            return {"B": self.B, "E": self.E, "alpha": self.alpha, "beta": self.beta,
                    "D_l": self.D_l}
        out = {"A": self.A, "E": self.E, "beta": self.beta}
        if self.form != SINGLE:
            out["alpha"] = self.alpha
        if self.form == ADDITIVE:
            out["B"] = self.B
        return out

    def logs(self) -> dict[str, float]:
        out = {"log_E": self.log_E} if self.form == RECTIFIED else \
            {"log_A": self.log_A, "log_E": self.log_E}
        if self.log_B is not None:
            out["log_B"] = self.log_B
        if self.log_D_l is not None:
            out["log_D_l"] = self.log_D_l
        return out

    def replicate_columns(self) -> list[str]:
        """What each entry of a replicate row in fit.json is (see replicate_row)."""
        if self.form == RECTIFIED:
            return ["log_B", "log_E", "alpha", "beta", "log_D_l"]
        cols = ["log_A", "log_E", "alpha", "beta"]
        return cols + ["log_B"] if self.form == ADDITIVE else cols

    def replicate_row(self) -> list[float]:
        """This law as one row of fit.json's `replicates`, logs of the coefficients (A alone
        can exceed float range for extreme exponents), REPLICATE_DIGITS significant digits."""
        return [float(f"{getattr(self, c):.{REPLICATE_DIGITS}g}")
                for c in self.replicate_columns()]

    @classmethod
    def from_replicate_row(cls, form: str, columns: Sequence[str],
                           row: Sequence[float]) -> "LawParams":
        """The inverse of replicate_row (columns as written next to the rows)."""
        v = dict(zip(columns, (float(x) for x in row)))
        return cls(form, v.get("log_A", math.nan), v.get("alpha", 0.0), v["beta"], v["log_E"],
                   v.get("log_B"), v.get("log_D_l"))


def params_from_theta(theta: np.ndarray, form: str, k: int, x_ref: float,
                      d_ref: float) -> LawParams:
    """Factor k's law in original units from a normalised parameter vector (model.py layout)."""
    if form == RECTIFIED:  # [β, f, c, l, α]: see ftscale.law.model
        beta, f, c, l, alpha = (float(t) for t in theta[:5])
        e = f / alpha
        b = c - math.log(alpha) + e
        return LawParams(form, math.nan, alpha, beta, e, b + beta * d_ref, l + beta * d_ref)
    stride = 3 if form == ADDITIVE else 2
    beta, e = float(theta[0]), float(theta[1])
    a, alpha = float(theta[2 + stride * k]), float(theta[3 + stride * k])
    if form == ADDITIVE:
        b = float(theta[4 + stride * k])
        return LawParams(form, a + alpha * x_ref, alpha, beta, e, b + beta * d_ref)
    if form == SINGLE:
        return LawParams(form, a + beta * d_ref, 0.0, beta, e)
    return LawParams(form, a + alpha * x_ref + beta * d_ref, alpha, beta, e)


# ---- data of one factor --------------------------------------------------------------------

@dataclass(frozen=True)
class FactorData:
    """One factor's seed-averaged points, its held-out mask and its normalisation.

    run_index maps each of its runs to an index in the caller's list of unique runs, so that a
    bootstrap replicate can reweight all factors of a method from one draw.
    """

    name: str
    x_column: str | None
    points: PointSet
    heldout: np.ndarray
    x_ref: float
    run_index: np.ndarray

    @property
    def fit_mask(self) -> np.ndarray:
        return ~self.heldout

    def log_x(self) -> np.ndarray:
        return np.log(self.points.x)


def make_factor(name: str, x_column: str | None, rows: Sequence[Mapping], d: str, loss: str,
                x_axis: AxisHoldout, d_axis: AxisHoldout, run_ids: dict[str, int],
                what: str) -> FactorData:
    """Validate rows, average seeds, split held-out points. run_ids is extended in place with
    the run keys it meets (so several factors share one index of runs)."""
    runs = run_arrays(rows, x_column, d, loss, what=what)
    pts = average_seeds(runs)
    held = x_axis.mask(pts.x) | d_axis.mask(pts.d) if x_column is not None \
        else d_axis.mask(pts.d)
    fit = ~held
    x_ref = float(np.mean(np.log(pts.x[fit]))) if fit.any() else 0.0
    idx = np.array([run_ids.setdefault(key, len(run_ids)) for key in runs.keys], dtype=int)
    return FactorData(name, x_column, pts, held, x_ref, idx)


def check_enough(factor: FactorData, form: str, what: str, stage2: bool = False) -> None:
    """Raise LawInputError when the fitting set cannot determine the law: NotIdentifiable
    (a subclass) when its design cannot separate the exponents (docs/law.md §9). A stage-2
    law has β fixed, so only its X needs to vary: D ∝ X is fine there."""
    pts = factor.points
    fit = factor.fit_mask
    n_fit = int(fit.sum())
    if form == RECTIFIED:
        n_d = len(np.unique(pts.d[fit]))
        if n_d < RECTIFIED_MIN_DATA_SIZES:
            raise LawInputError(
                f"{what}: the rectified law (5 parameters) needs at least "
                f"{RECTIFIED_MIN_DATA_SIZES} distinct data sizes to fit, found {n_d} after the "
                "held-out split; add runs on more data subsets or use --holdout none")
        return
    n_params = {MULTIPLICATIVE: 4, ADDITIVE: 5, SINGLE: 3}[form] - (2 if stage2 else 0)
    if form != SINGLE and len(np.unique(pts.x[fit])) < 2:
        values = ", ".join(f"{v:g}" for v in np.unique(pts.x))
        raise NotIdentifiable(
            f"{what}: the {form} law needs at least 2 distinct X values to fit after the "
            f"held-out split, found X = {values}; add runs at other X values, use --holdout none, "
            "or fit --form single")
    if len(np.unique(pts.d[fit])) < 2:
        raise NotIdentifiable(
            f"{what}: the law needs at least 2 distinct data sizes to fit after the held-out "
            "split; add runs at other data sizes or use --holdout none")
    if n_fit < n_params + 1:
        raise LawInputError(
            f"{what}: {n_fit} fitting point(s) for a {form} law with {n_params} free parameters; "
            f"it needs at least {n_params + 1} (unique X, D) points — add runs or use "
            "--holdout none")
    if form != SINGLE and not stage2:
        check_design(np.log(pts.x[fit]), np.log(pts.d[fit]), what)


def joint_points(factors: Sequence[FactorData], d_ref: float,
                 counts: np.ndarray | None = None) -> Points:
    """The fitting points of several factors as one normalised problem (factor k = index).

    counts: bootstrap multiplicity of every unique run (None = the data as observed). A point's
    weight is the mean multiplicity of its runs (so 1 on average, and exactly the usual case
    resampling weight with one run per point) and its loss the multiplicity-weighted mean.
    """
    us, vs, ks, ys, ws = [], [], [], [], []
    for k, f in enumerate(factors):
        p = f.points
        fit = f.fit_mask
        if counts is None:
            y, w = p.y, np.ones(p.size)
        else:
            c = counts[f.run_index].astype(float)
            csum = np.bincount(p.run_point, weights=c, minlength=p.size)
            ysum = np.bincount(p.run_point, weights=c * p.run_loss, minlength=p.size)
            y = np.where(csum > 0, ysum / np.maximum(csum, 1e-300), p.y)
            w = csum / p.n_runs
        us.append(np.log(p.x[fit]) - f.x_ref if f.x_column is not None
                  else np.zeros(int(fit.sum())))
        vs.append(np.log(p.d[fit]) - d_ref)
        ks.append(np.full(int(fit.sum()), k))
        ys.append(y[fit])
        ws.append(w[fit])
    return Points(np.concatenate(us), np.concatenate(vs), np.concatenate(ks),
                  np.concatenate(ys), np.concatenate(ws), len(factors))


def d_reference(factors: Sequence[FactorData]) -> float:
    logs = np.concatenate([np.log(f.points.d[f.fit_mask]) for f in factors])
    return float(np.mean(logs))


# ---- minimisation of one or several factors ------------------------------------------------

def minimise(factors: Sequence[FactorData], form: str, residual: str, delta: float,
             strategy: str, shared: tuple[float, float] | None = None):
    """Global minimum of the joint law over the factors' fitting points.

    shared = (β, e) fixes the shared parameters (stage 2). With several factors (stage 1) the
    start is built from one-factor fits: each factor's own (β, e) and their mean are tried as
    the shared values, the per-factor (a, α[, b]) are re-solved for each, and the best of the
    joint polishes wins. Returns (theta, Convergence, d_ref).
    """
    d_ref = d_reference(factors)
    if form == SINGLE:
        fixed = {3: 0.0}
    else:
        fixed = {}  # (the rectified law has no fixed entries and one factor)
    if shared is not None:
        fixed.update({0: shared[0], 1: shared[1]})
    if len(factors) == 1:
        pts = joint_points(factors, d_ref)
        theta, conv = minimise_one_factor(pts, form, residual, delta, fixed, strategy)
        return theta, conv, d_ref
    singles = []
    for f in factors:
        pts = joint_points([f], d_ref)
        singles.append(minimise_one_factor(pts, form, residual, delta, fixed, strategy))
    candidates = [(th[0], th[1]) for th, _ in singles]
    candidates.append((float(np.mean([c[0] for c in candidates])),
                       float(np.mean([c[1] for c in candidates]))))
    full = joint_points(factors, d_ref)
    stride = 3 if form == ADDITIVE else 2
    free = np.ones(2 + stride * len(factors), dtype=bool)
    best = None
    for beta, e in candidates:
        theta0 = np.zeros_like(free, dtype=float)
        theta0[0], theta0[1] = beta, e
        edge = False
        for k, f in enumerate(factors):
            pts = joint_points([f], d_ref)
            th, conv = minimise_one_factor(pts, form, residual, delta, {0: beta, 1: e}, strategy)
            theta0[2 + stride * k: 2 + stride * (k + 1)] = th[2:]
            edge |= conv.start_on_grid_edge or singles[k][1].start_on_grid_edge
        theta, conv = polish(theta0, full, form, residual, delta, free, edge=edge,
                             strategy=strategy)
        if best is None or conv.objective < best[1].objective:
            best = (theta, conv)
    if best is None or not np.all(np.isfinite(best[0])):
        raise FitError("the joint fit produced no finite parameters; check the table for "
                       "extreme values")
    return best[0], best[1], d_ref


def free_mask(form: str, n_factors: int, shared_fixed: bool) -> np.ndarray:
    names = layout_names(form, n_factors)
    mask = np.ones(len(names), dtype=bool)
    if shared_fixed:
        mask[:2] = False
    if form == SINGLE:
        mask[3] = False
    return mask


# ---- results ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class BootstrapSummary:
    requested: int
    converged: int  # replicates whose every polish converged (only those make the intervals)
    level: float
    seed: int

    def to_dict(self) -> dict:
        return {"resamples": self.requested, "converged": self.converged,
                "confidence_level": self.level, "seed": self.seed}


@dataclass(frozen=True)
class FittedLaw:
    """One fitted law: (group, factor, form[, X value]) with parameters, intervals, Δs and the
    optimiser's verdict. `samples` holds the bootstrap laws (None where a replicate did not
    converge), aligned across fits that share a bootstrap, for derived quantities."""

    form: str
    factor: str | None
    x_column: str | None
    group: tuple[tuple[str, object], ...]
    params: LawParams
    intervals: dict[str, tuple[float, float]]
    delta_fit: float
    delta_heldout: float | None
    n_fit: int
    n_heldout: int
    n_runs: int
    convergence: Convergence
    points: tuple[dict, ...]
    x_value: float | None = None
    stage1: Convergence | None = None
    bootstrap: BootstrapSummary | None = None
    samples: tuple[LawParams | None, ...] = field(default=(), repr=False)
    # Diagnostics (ftscale.law.diagnostics, docs/law.md §9): empty for a healthy fit.
    flags: tuple[Flag, ...] = ()
    # Signed mean of L̂ − L over fitting / held-out points (nats): > 0 means the law predicts
    # higher losses than observed. Δ_fit/Δ_held-out are the same without the sign.
    bias_fit: float = 0.0
    bias_heldout: float | None = None

    @property
    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.group]
        if self.factor:
            parts.append(self.factor)
        if self.x_value is not None:
            parts.append(f"X={self.x_value:g}")
        return " ".join(parts) or "all"

    def to_dict(self, with_points: bool = True, with_replicates: bool = True) -> dict:
        """The law as fit.json holds it. `replicates` (with a bootstrap) lists every replicate
        in bootstrap order as a row of `replicate_columns` (null where it did not converge),
        aligned with the same replicate index of every other law of the fit: what
        `ftscale predict` / `recommend` turn into prediction intervals."""
        out = {
            "form": self.form,
            "factor": self.factor,
            "x_column": self.x_column,
            "group": {k: v for k, v in self.group},
            **self.params.values(),
            **self.params.logs(),
            "intervals": {k: list(v) for k, v in self.intervals.items()},
            "delta_fit": self.delta_fit,
            "delta_heldout": self.delta_heldout,
            "bias_fit": self.bias_fit,
            "bias_heldout": self.bias_heldout,
            "flags": [f.to_dict() for f in self.flags],
            "n_fit_points": self.n_fit,
            "n_heldout_points": self.n_heldout,
            "n_runs": self.n_runs,
            "convergence": self.convergence.to_dict(),
        }
        if self.x_value is not None:
            out["x_value"] = self.x_value
        if self.stage1 is not None:
            out["stage1_convergence"] = self.stage1.to_dict()
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap.to_dict()
        if with_replicates and self.samples:
            out["replicate_columns"] = self.params.replicate_columns()
            out["replicates"] = [None if s is None else s.replicate_row() for s in self.samples]
        if with_points:
            out["points"] = list(self.points)
        return out


def finish_law(form: str, factor: FactorData, params: LawParams, conv: Convergence,
               group, samples=(), boot: BootstrapSummary | None = None,
               stage1: Convergence | None = None, x_value: float | None = None,
               factor_name: str | None = None) -> FittedLaw:
    """Δs, signed biases, points, intervals and diagnostic flags for a fitted law.

    A law with `stage1` set is a stage-2 law: its β came from the pooled stage-1 fit, so its
    own (log X, log D) correlation is not flagged (docs/law.md §9).
    """
    p = factor.points
    pred = params.predict(p.x, p.d)
    signed = pred - p.y
    err = np.abs(signed)
    fit = factor.fit_mask
    pts = tuple({"x": float(p.x[i]), "d": float(p.d[i]), "loss": float(p.y[i]),
                 "n_runs": int(p.n_runs[i]), "pred": float(pred[i]),
                 "heldout": bool(factor.heldout[i])} for i in range(p.size))
    level = boot.level if boot else 0.95
    intervals = intervals_of(samples, level)
    delta_fit = float(np.mean(err[fit]))
    delta_heldout = float(np.mean(err[~fit])) if (~fit).any() else None
    flags = law_flags(params=params, convergence=conv, stage1=stage1, x=p.x, d=p.d, y=p.y,
                      pred=pred, fit_mask=fit, delta_fit=delta_fit,
                      delta_heldout=delta_heldout, intervals=intervals, samples=samples,
                      requested=boot.requested if boot else 0, level=level,
                      check_design=stage1 is None and factor.x_column is not None)
    return FittedLaw(
        form=form, factor=factor_name if factor_name is not None else factor.name,
        x_column=factor.x_column, group=tuple(group), params=params,
        intervals=intervals, delta_fit=delta_fit, delta_heldout=delta_heldout,
        n_fit=int(fit.sum()), n_heldout=int((~fit).sum()), n_runs=int(p.n_runs.sum()),
        convergence=conv, points=pts, x_value=x_value, stage1=stage1, bootstrap=boot,
        samples=tuple(samples), flags=flags, bias_fit=float(np.mean(signed[fit])),
        bias_heldout=float(np.mean(signed[~fit])) if (~fit).any() else None)


def percentile_interval(values, level: float) -> tuple[float, float] | None:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], float)
    if arr.size < 2:
        return None
    lo, hi = np.percentile(arr, [50 * (1 - level), 100 - 50 * (1 - level)])
    return (float(lo), float(hi))


def intervals_of(samples, level: float) -> dict[str, tuple[float, float]]:
    """Percentile intervals of every reported parameter over the converged replicates."""
    good = [s for s in samples if s is not None]
    if len(good) < 2:
        return {}
    out = {}
    for key in good[0].values():
        if key in ("A", "E", "B", "D_l"):
            logs = [getattr(s, "log_" + key) for s in good]
            iv = percentile_interval(logs, level)
            if iv:
                out[key] = (math.exp(min(iv[0], _LOG_MAX)), math.exp(min(iv[1], _LOG_MAX)))
        else:
            iv = percentile_interval([getattr(s, key) for s in good], level)
            if iv:
                out[key] = iv
    return out


def replicate_counts(rng: np.random.Generator, n_runs: int) -> np.ndarray:
    """Case-resampling bootstrap over runs: multiplicity of each run in one replicate."""
    return np.bincount(rng.integers(0, n_runs, size=n_runs), minlength=n_runs)


# Replicates are polished in chunks (solver.polish_many): up to this many (replicate, point)
# cells per chunk keeps the B × n × P Jacobian near 2 MB per parameter, and at most this many
# replicates per chunk lets a progress bar move (the rows of a chunk never interact, so the
# chunking does not change any replicate's result).
CHUNK_CELLS = 50_000
CHUNK_MAX_REPLICATES = 100


def replicate_chunks(n_replicates: int, n_points: int) -> list[range]:
    """Consecutive ranges of replicate indices, each polished as one batch."""
    size = max(1, min(CHUNK_MAX_REPLICATES, CHUNK_CELLS // max(1, n_points)))
    return [range(i, min(i + size, n_replicates)) for i in range(0, n_replicates, size)]


def polish_replicates(factors: Sequence[FactorData], d_ref: float, counts: Sequence[np.ndarray],
                      starts: np.ndarray, form: str, residual: str, delta: float,
                      free: np.ndarray, strategy: str):
    """Polish one bootstrap replicate per entry of `counts` (run multiplicities) of the joint
    problem over `factors`, all at once, from `starts` ((P,) or one row per replicate).
    Returns (B × P optima, list of B Convergences)."""
    base = joint_points(factors, d_ref)
    reps = [joint_points(factors, d_ref, c) for c in counts]
    ys = np.stack([p.y for p in reps])
    ws = np.stack([p.w for p in reps])
    return polish_many(starts, base, ys, ws, form, residual, delta, free, strategy=strategy)


# ---- fit_law: one table, one form ---------------------------------------------------------

def fit_law(rows: Sequence[Mapping], *, form: str = MULTIPLICATIVE, x: str = "model_params",
            d: str = "data_size", loss: str = "test_loss", residual: str = "raw",
            delta: float = 1e-3, holdout: HoldoutSpec | str | dict | None = None,
            bootstrap: int = 0, seed: int = 0, strategy: str = "varpro",
            confidence: float = 0.95, group: Sequence[tuple[str, object]] = (),
            progress=None, notes: list[str] | None = None) -> list[FittedLaw]:
    """Fit one law form to one table of runs (no two-stage protocol: one factor, all free).

    Joint forms return one FittedLaw; the single-variable form returns one per X value with
    enough points (≥ 4 distinct D after the held-out split; X values with fewer are skipped);
    the rectified law (Lin et al.) returns one law for all the rows, which must be the runs
    of one model (x is ignored; ≥ 6 distinct D after the held-out split).
    The held-out split is by value: holdout's x and d (default the largest of each; the single
    form ignores x). bootstrap > 0 adds percentile intervals from that many case resamples of
    the runs (seeded). progress: optional callable(n) called after each replicate. notes: a
    list that receives one-line remarks (e.g. the X values the single form dropped).

    Raises LawInputError for bad columns/values/too few points; FitError when no finite fit.
    """
    with single_threaded_blas():
        return _fit_law(rows, form, x, d, loss, residual, delta, holdout, bootstrap, seed,
                        strategy, confidence, group, progress,
                        notes if notes is not None else [])


def _fit_law(rows, form, x, d, loss, residual, delta, holdout, bootstrap, seed, strategy,
             confidence, group, progress, notes) -> list[FittedLaw]:
    # the rectified law is not a study form; the options are validated as for any other
    opts = LawOptions(forms=(SINGLE if form == RECTIFIED else form,), residual=residual,
                      delta=delta,
                      holdout=holdout if isinstance(holdout, HoldoutSpec)
                      else HoldoutSpec.parse(holdout),
                      bootstrap=bootstrap, seed=seed, confidence=confidence, strategy=strategy)
    what = " ".join(f"{k}={v}" for k, v in group) or "table"
    x_axis, d_axis = opts.holdout.for_factor(None)
    if form == SINGLE:
        return _fit_single(rows, x, d, loss, d_axis, opts, group, what, progress, notes)
    if form == RECTIFIED:
        return [_fit_rectified(rows, d, loss, d_axis, opts, group, what, progress)]
    run_ids: dict[str, int] = {}
    factor = make_factor(x, x, rows, d, loss, x_axis, d_axis, run_ids, what)
    check_enough(factor, form, what)
    theta, conv, d_ref = minimise([factor], form, residual, delta, strategy)
    params = params_from_theta(theta, form, 0, factor.x_ref, d_ref)
    samples, boot = _bootstrap_one(factor, form, theta, d_ref, opts, len(run_ids), progress)
    return [finish_law(form, factor, params, conv, group, samples, boot)]


def _fit_rectified(rows, d, loss, d_axis, opts: LawOptions, group, what,
                   progress) -> FittedLaw:
    """The rectified law of one model's runs: data size only, held-out split on D."""
    run_ids: dict[str, int] = {}
    factor = make_factor("rectified", None, rows, d, loss, AxisHoldout("none"), d_axis,
                         run_ids, what)
    check_enough(factor, RECTIFIED, what)
    theta, conv, d_ref = minimise([factor], RECTIFIED, opts.residual, opts.delta, opts.strategy)
    params = params_from_theta(theta, RECTIFIED, 0, 0.0, d_ref)
    samples, boot = _bootstrap_one(factor, RECTIFIED, theta, d_ref, opts, len(run_ids), progress)
    law = finish_law(RECTIFIED, factor, params, conv, group, samples, boot)
    return replace(law, factor=None)  # one model's runs: no factor of the study protocol


def _bootstrap_one(factor: FactorData, form: str, theta: np.ndarray, d_ref: float,
                   opts: LawOptions, n_unique: int, progress, x_ref: float | None = None):
    """Bootstrap replicates of one fit, each re-polished from the full fit `theta`."""
    if opts.bootstrap <= 0:
        return (), None
    rng = np.random.default_rng(opts.seed)
    counts = [replicate_counts(rng, n_unique) for _ in range(opts.bootstrap)]
    free = free_mask(form, 1, shared_fixed=False)
    samples = []
    for chunk in replicate_chunks(len(counts), int(factor.fit_mask.sum())):
        thetas, convs = polish_replicates([factor], d_ref, [counts[i] for i in chunk], theta,
                                          form, opts.residual, opts.delta, free, opts.strategy)
        samples += [params_from_theta(th, form, 0, factor.x_ref, d_ref) if conv.converged
                    else None for th, conv in zip(thetas, convs)]
        if progress:
            progress(len(chunk))
    boot = BootstrapSummary(opts.bootstrap, sum(s is not None for s in samples),
                            opts.confidence, opts.seed)
    return samples, boot


def _fit_single(rows, x, d, loss, d_axis, opts, group, what, progress,
                notes: list[str]) -> list[FittedLaw]:
    runs_by_x: dict[float, list] = {}
    if x is not None:
        xs = run_arrays(rows, x, d, loss, what=what).x
        for row, xv in zip(rows, xs):
            runs_by_x.setdefault(float(xv), []).append(row)
    else:
        runs_by_x[1.0] = list(rows)
    out = []
    skipped = []
    for xv in sorted(runs_by_x):
        run_ids: dict[str, int] = {}
        factor = make_factor(x or "all", None, runs_by_x[xv], d, loss, AxisHoldout("none"),
                             d_axis, run_ids, f"{what} X={xv:g}")
        n_d = len(np.unique(factor.points.d[factor.fit_mask]))
        if n_d < SINGLE_MIN_DATA_SIZES:
            skipped.append((xv, n_d))
            continue
        theta, conv, d_ref = minimise([factor], SINGLE, opts.residual, opts.delta, opts.strategy)
        params = params_from_theta(theta, SINGLE, 0, 0.0, d_ref)
        samples, boot = _bootstrap_one(factor, SINGLE, theta, d_ref, opts, len(run_ids), progress)
        law = finish_law(SINGLE, factor, params, conv, group, samples, boot,
                         x_value=xv if x is not None else None, factor_name=x)
        out.append(law)
    if not out:
        raise LawInputError(f"{what}: no X value has the {SINGLE_MIN_DATA_SIZES} distinct data "
                            "sizes the single-variable law needs after the held-out split; add "
                            "data sizes or use --holdout none")
    if skipped:
        notes.append(f"{what}: single-variable law not fitted at X = " + ", ".join(
            f"{xv:g} ({n} data size{'s' if n != 1 else ''})" for xv, n in skipped)
            + f": it needs {SINGLE_MIN_DATA_SIZES} distinct data sizes after the held-out split")
    return out
