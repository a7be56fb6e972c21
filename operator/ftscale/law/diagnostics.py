"""Identifiability and degenerate-fit diagnostics (docs/law.md §9 has every rule and its why).

Two kinds of check:

* **Before a fit** — `design_problem(log_x, log_d)`: can the fitting points separate α from
  β at all? One X value, one data size, or log D a linear function of log X (D ∝ X^k, or the
  data-size column given as X) make the law's exponents trade off exactly; `check_design`
  raises `NotIdentifiable` (a LawInputError: `ftscale fit` exits 2) with a message that says
  which runs to add. A merely correlated design is flagged (`IllConditioned`), not refused.
* **After a fit** — `law_flags(...)`: a tuple of `Flag(code, parameter, message)` carried by
  every FittedLaw into fit.json, the report and the fit summary. Codes are stable CamelCase
  names (the constants below); `parameter` names the parameter (A, B, E, alpha, beta) or is
  None for the whole law.

Everything here is a pure function of numbers the fit already has (parameters in original
units, the fitting points, the bootstrap replicates), so each rule is unit-tested on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ftscale.law.errors import NotIdentifiable
from ftscale.law.model import ADDITIVE, RECTIFIED, SINGLE
from ftscale.law.solver import (EXPONENT_BOUNDS, RECTIFIED_ALPHA_BOUNDS,
                                RECTIFIED_BETA_BOUNDS)

# ---- codes (stable: the fit summary, the report and the Grafana panel key on them) --------
NOT_CONVERGED = "NotConverged"
NOT_IDENTIFIABLE = "NotIdentifiable"
ILL_CONDITIONED = "IllConditioned"
AT_BOUND = "AtBound"
ZERO_WIDTH_INTERVAL = "ZeroWidthInterval"
WIDE_INTERVAL = "WideInterval"
CORRELATED_PARAMETERS = "CorrelatedParameters"
REPLICATES_DROPPED = "ReplicatesDropped"
HELD_OUT_MUCH_WORSE = "HeldOutMuchWorse"
CODES = (NOT_CONVERGED, NOT_IDENTIFIABLE, ILL_CONDITIONED, AT_BOUND, ZERO_WIDTH_INTERVAL,
         WIDE_INTERVAL, CORRELATED_PARAMETERS, REPLICATES_DROPPED, HELD_OUT_MUCH_WORSE)

# ---- tolerances (each with its reason; docs/law.md §9 repeats them) ----------------------
# A design whose points spread by less than 0.1 % (1e-3 in natural-log units) along some
# direction of (log X, log D) carries no information along it: the loss differences it could
# show are ~β·1e-3·L ≈ 1e-4 nats, far below any run's noise (1e-3–1e-2 nats).
DESIGN_MIN_LOG_SD = 1e-3
# Variance inflation of α and β from correlated log X and log D: above 10 (|ρ| > 0.95) their
# standard errors are > 3× those of a crossed grid (the usual regression rule of thumb).
ILL_CONDITIONED_VIF = 10.0
# An exponent this close to its optimiser bound [−2, 6] is held there by the bound, not by
# the data (real finetuning exponents are |α|, |β| ≤ ~0.6).
EXPONENT_BOUND_TOL = 0.05
# A term (E, the A term, the B term) below 0.1 % of the smallest fitted loss at every fitting
# point is at its lower bound 0: the data cannot see it, and its log drifts toward −∞.
TERM_ZERO_RTOL = 1e-3
# An interval narrower than this (log units for A, B, E; absolute for exponents) means no
# replicate moved the parameter: resampled runs move a determined parameter by its sampling
# error, ≥ 1e-4 even for exact-looking data.
ZERO_WIDTH_TOL = 1e-6
# Data fitted to this relative precision are exact (noise-free synthetic tables): then every
# replicate finds the same law and a zero-width interval is right, not a symptom.
EXACT_FIT_RTOL = 1e-9
# "More than a decade": a coefficient's interval with hi/lo > 10, or an exponent's interval
# wider than 1 (extrapolating one decade of X or D is then uncertain by more than 10×).
WIDE_RATIO = 10.0
WIDE_EXPONENT = 1.0
# A–α correlation across replicates. |ρ(log A, α)| is ≈ 1 for every law whose X lies far from
# 1 (0.995–0.9999 on healthy planted laws: it measures how far X is from 1, not degeneracy),
# so it is flagged only when it matters: α itself uncertain by more than 0.3 (one decade of
# extrapolation in X uncertain by more than 2×).
CORRELATION_TOL = 0.99
CORRELATED_EXPONENT_WIDTH = 0.3
MIN_REPLICATES_FOR_CORRELATION = 10
# Held-out error "far above" the fit error: 3× the fitting MAD (a law that extrapolates as
# well as it fits has Δ_held-out ≈ 1–2 × Δ_fit) and at least 1e-3 nats (below that, nobody
# acts on it).
HELDOUT_RATIO = 3.0
HELDOUT_FLOOR = 1e-3
# A flat fit: its predictions vary over the fitting points by less than 3× its own mean
# absolute error — the law explains no more than the noise, so its exponents mean nothing.
FLAT_RATIO = 3.0
# Intervals come from converged replicates only; when more than 10 % were dropped, the kept
# ones are a biased subset (those near the point estimate).
REPLICATES_KEPT_MIN = 0.9


@dataclass(frozen=True)
class Flag:
    """One diagnostic finding on a fitted law: code (one of CODES), the parameter it concerns
    (A, B, E, alpha, beta) or None for the whole law, and a one-sentence message with the
    numbers."""

    code: str
    parameter: str | None
    message: str

    def to_dict(self) -> dict:
        return {"code": self.code, "parameter": self.parameter, "message": self.message}

    def label(self) -> str:
        return f"{self.code}({self.parameter})" if self.parameter else self.code


# ---- before the fit: the design ---------------------------------------------------------

def design_problem(log_x: np.ndarray | None, log_d: np.ndarray) -> str | None:
    """Why the fitting points' design [1, log X, log D] cannot separate the law's exponents,
    or None when it can. log_x None: the single-variable law (only log D matters).

    The centred design's smallest singular value / √n is the spread of the points along
    their least-varying direction in (log X, log D); below DESIGN_MIN_LOG_SD the design is
    (numerically) rank-deficient. The message names the missing runs.
    """
    log_d = np.asarray(log_d, float)
    if log_d.size == 0:
        return "no fitting points"
    sd_d = float(np.std(log_d))
    if sd_d < DESIGN_MIN_LOG_SD:
        return (f"every fitting point has the same data size (D = {math.exp(log_d[0]):g}), so "
                "β cannot be estimated; add runs at 2 or more other data sizes")
    if log_x is None:
        return None
    log_x = np.asarray(log_x, float)
    sd_x = float(np.std(log_x))
    if sd_x < DESIGN_MIN_LOG_SD:
        return (f"every fitting point has the same X (X = {math.exp(log_x[0]):g}), so α cannot "
                "be estimated; add runs at 2 or more other X values, or fit --form single")
    z = np.column_stack([log_x - log_x.mean(), log_d - log_d.mean()]) / math.sqrt(log_x.size)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    if s[-1] >= DESIGN_MIN_LOG_SD:
        return None
    vx, vd = vt[-1]
    k = -vx / vd  # log D ≈ c + k·log X along the design
    hint = (" (D/X is constant: check that --x does not name the data-size column)"
            if abs(k - 1) < 1e-3 else "")
    return (f"log D is a linear function of log X on every fitting point (D ∝ X^{k:.3g}){hint}: "
            "X and D grow together, so the law cannot tell α from β; add runs at 2 or more "
            "data sizes for the same X (a crossed grid), or fit --form single")


def check_design(log_x: np.ndarray | None, log_d: np.ndarray, what: str) -> None:
    """Raise NotIdentifiable (exit 2) when design_problem finds one; `what` names the table."""
    problem = design_problem(log_x, log_d)
    if problem:
        raise NotIdentifiable(f"{what}: {problem}")


def design_vif(log_x: np.ndarray, log_d: np.ndarray) -> float:
    """Variance inflation factor 1/(1 − ρ²) of α and β, ρ = corr(log X, log D) over the
    fitting points (1 for a crossed grid; inf when collinear)."""
    sx, sd = float(np.std(log_x)), float(np.std(log_d))
    if sx == 0 or sd == 0:
        return math.inf
    rho = float(np.mean((log_x - log_x.mean()) * (log_d - log_d.mean())) / (sx * sd))
    return math.inf if abs(rho) >= 1 else 1.0 / (1.0 - rho * rho)


# ---- after the fit: one law --------------------------------------------------------------

def _interval(values: np.ndarray, level: float) -> tuple[float, float] | None:
    values = values[np.isfinite(values)]
    if values.size < 2:
        return None
    lo, hi = np.percentile(values, [50 * (1 - level), 100 - 50 * (1 - level)])
    return float(lo), float(hi)


def convergence_flags(convergence, stage1=None) -> list[Flag]:
    """NotConverged for the law's own polish and for the stage-1 fit its β and E came from."""
    out = []
    if not convergence.converged:
        names = sorted({re.sub(r"\d+$", "", n) for n in convergence.at_bound})
        why = (f"parameter(s) on a bound: {', '.join(names)}"
               if convergence.at_bound else
               f"stationarity {convergence.stationarity:.2g} > 1e-4")
        out.append(Flag(NOT_CONVERGED, None,
                        f"the fit did not converge ({why}; optimiser: "
                        f"{convergence.message[:60]}); its parameters are not a minimum"))
    if stage1 is not None and not stage1.converged:
        out.append(Flag(NOT_CONVERGED, "beta",
                        "the stage-1 fit that set the shared β and E did not converge "
                        f"(stationarity {stage1.stationarity:.2g}); β and E are not a minimum"))
    return out


def flat_flag(pred: np.ndarray, y: np.ndarray, delta_fit: float) -> list[Flag]:
    """NotIdentifiable when the fitted law is flat: its predictions vary less over the fitting
    points than FLAT_RATIO × its own mean absolute error (constant loss, or pure noise)."""
    spread = float(np.ptp(pred)) if pred.size else 0.0
    if spread <= FLAT_RATIO * delta_fit + EXACT_FIT_RTOL * float(np.mean(np.abs(y))):
        return [Flag(NOT_IDENTIFIABLE, None,
                     f"the fitted law is flat: its predictions vary by {spread:.2g} nats over "
                     f"the fitting points, not more than {FLAT_RATIO:g}× its error "
                     f"(Δ_fit = {delta_fit:.2g}); the loss shows no trend the law can "
                     "attribute to X or D, so no exponent is identified")]
    return []


def design_flags(log_x: np.ndarray, log_d: np.ndarray) -> list[Flag]:
    """IllConditioned when log X and log D are correlated enough to inflate α's and β's
    variance more than ILL_CONDITIONED_VIF times."""
    vif = design_vif(log_x, log_d)
    if vif > ILL_CONDITIONED_VIF:
        rho = math.sqrt(max(0.0, 1 - 1 / vif)) if math.isfinite(vif) else 1.0
        return [Flag(ILL_CONDITIONED, None,
                     f"log X and log D are correlated on the fitting points (|ρ| = {rho:.3f}, "
                     f"variance inflation {vif:.3g}): α and β are hard to tell apart; add "
                     "runs that vary D at a fixed X")]
    return []


def _log_terms(params, log_x: np.ndarray, log_d: np.ndarray) -> dict[str, np.ndarray]:
    """log of each additive term of the law at the given points, keyed by its coefficient
    (the rectified law: its power term B / (D_l + D^β), inside the outer power α)."""
    if params.form == RECTIFIED:
        return {"B": params.log_B - np.logaddexp(params.log_D_l, params.beta * log_d)}
    if params.form == ADDITIVE:
        return {"A": params.log_A - params.alpha * log_x,
                "B": params.log_B - params.beta * log_d}
    if params.form == SINGLE:
        return {"A": params.log_A - params.beta * log_d}
    return {"A": params.log_A - params.alpha * log_x - params.beta * log_d}


def bound_flags(params, log_x: np.ndarray, log_d: np.ndarray, y: np.ndarray) -> list[Flag]:
    """AtBound: an exponent within EXPONENT_BOUND_TOL of its optimiser bound, or a term (E,
    A·X^−α·D^−β, B·D^−β) below TERM_ZERO_RTOL of the smallest loss at every fitting point —
    at its lower bound 0, where the data cannot see it."""
    if params.form == RECTIFIED:
        return rectified_bound_flags(params, log_d, y)
    out = []
    lo, hi = EXPONENT_BOUNDS
    values = params.values()
    for name in ("alpha", "beta"):
        if name not in values:
            continue
        v = values[name]
        if v <= lo + EXPONENT_BOUND_TOL or v >= hi - EXPONENT_BOUND_TOL:
            out.append(Flag(AT_BOUND, name,
                            f"{name} = {v:.4g} is at its bound [{lo:g}, {hi:g}]: the bound, not "
                            "the data, holds it there"))
    floor = math.log(TERM_ZERO_RTOL * float(np.min(y)))
    if params.log_E < floor:
        out.append(Flag(AT_BOUND, "E",
                        f"E = {params.E:.3g} is at its lower bound 0 (under "
                        f"{TERM_ZERO_RTOL:.1%} of the smallest loss {float(np.min(y)):.4g}): the "
                        "data show no loss floor, so E is not determined"))
    for name, logs in _log_terms(params, log_x, log_d).items():
        if float(np.max(logs)) < floor:
            term = {"A": "the power-law term A·X^−α·D^−β" if params.form != ADDITIVE
                    else "the X term A·X^−α", "B": "the data term B·D^−β"}[name]
            out.append(Flag(AT_BOUND, name,
                            f"{term} is under {TERM_ZERO_RTOL:.1%} of the loss at every fitting "
                            f"point ({name} = {values[name]:.3g}): it sits at its lower bound 0 "
                            "and its exponent is not determined"))
    return out


def rectified_bound_flags(params, log_d: np.ndarray, y: np.ndarray) -> list[Flag]:
    """AtBound for the rectified law: α or β at its optimiser bound; D_l below TERM_ZERO_RTOL
    of D^β at every fitting point (no pre-power phase in the data: the law is the vanilla
    (B/D^β + E)^α and D_l is not determined — the plain power law fits as well); E^α (the
    loss floor) below TERM_ZERO_RTOL of the smallest loss."""
    out = []
    for name, (lo, hi) in (("alpha", RECTIFIED_ALPHA_BOUNDS), ("beta", RECTIFIED_BETA_BOUNDS)):
        v = getattr(params, name)
        if name == "alpha" and v >= hi - EXPONENT_BOUND_TOL:
            out.append(Flag(AT_BOUND, name,
                            f"alpha = {v:.4g} is at its upper bound {hi:g}: the curve is in the "
                            "law's exponential limit E^α·exp(α·B/(E·(D_l + D^β))), so α itself "
                            "is not determined (the predictions are)"))
        elif v <= lo + EXPONENT_BOUND_TOL * lo or v >= hi - EXPONENT_BOUND_TOL:
            out.append(Flag(AT_BOUND, name,
                            f"{name} = {v:.4g} is at its bound [{lo:g}, {hi:g}]: the bound, not "
                            "the data, holds it there"))
    if params.log_D_l - params.beta * float(np.min(log_d)) < math.log(TERM_ZERO_RTOL):
        out.append(Flag(AT_BOUND, "D_l",
                        f"D_l = {params.D_l:.3g} is under {TERM_ZERO_RTOL:.1%} of D^β at every "
                        "fitting point: the data show no pre-power phase, so D_l is not "
                        "determined (the plain power law fits these runs as well)"))
    if params.alpha * params.log_E < math.log(TERM_ZERO_RTOL * float(np.min(y))):
        out.append(Flag(AT_BOUND, "E",
                        f"the loss floor E^α = {math.exp(params.alpha * params.log_E):.3g} is "
                        f"under {TERM_ZERO_RTOL:.1%} of the smallest loss: the data show no "
                        "floor, so E (and with it α) is not determined"))
    return out


def _centred_samples(samples, log_x, log_d) -> dict[str, np.ndarray]:
    """Per-replicate logs of each term at the geometric centre of the fitting points: the
    coefficient as the data see it, without the ridge that A at X = 1 adds (log A moves by
    α·mean log X ≈ 22·Δα for billions of parameters)."""
    xc = np.array([float(np.mean(log_x))])
    dc = np.array([float(np.mean(log_d))])
    out: dict[str, list[float]] = {}
    for s in samples:
        for name, v in _log_terms(s, xc, dc).items():
            out.setdefault(name, []).append(float(v[0]))
    return {k: np.asarray(v) for k, v in out.items()}


def interval_flags(intervals: dict, samples: Sequence, level: float,
                   log_x: np.ndarray, log_d: np.ndarray, exact: bool) -> list[Flag]:
    """ZeroWidthInterval and WideInterval per parameter, and CorrelatedParameters (A–α).

    Coefficient widths are judged in log units, A and B at the centre of the data (see
    _centred_samples); E as reported. Exponent widths are absolute. exact: the data are
    fitted exactly (noise-free), where zero widths are expected and not flagged.
    """
    out = []
    good = [s for s in samples if s is not None]
    centred = _centred_samples(good, log_x, log_d) if good else {}
    for name in ("A", "B", "E", "alpha", "beta"):
        if name not in intervals:
            continue
        if name in ("A", "B"):
            iv = _interval(centred.get(name, np.array([])), level)
            if iv is None:
                continue
            width, shown = iv[1] - iv[0], "its term at the centre of the data"
        elif name == "E":
            lo, hi = intervals[name]
            if not (lo > 0 and hi > 0):
                continue
            width, shown = math.log(hi / lo), "it"
        else:
            lo, hi = intervals[name]
            width, shown = hi - lo, "it"
        is_exponent = name in ("alpha", "beta")
        lo_r, hi_r = intervals[name]
        if width < ZERO_WIDTH_TOL and not exact:
            out.append(Flag(ZERO_WIDTH_INTERVAL, name,
                            f"the interval of {name} [{lo_r:.4g}, {hi_r:.4g}] has (near) zero "
                            "width: no bootstrap replicate moved it, so the objective is flat "
                            "in it and the interval claims a certainty the data do not give"))
        elif (is_exponent and width > WIDE_EXPONENT) or \
                (not is_exponent and width > math.log(WIDE_RATIO)):
            span = (f"{width:.3g} wide (one decade of extrapolation uncertain by more than "
                    "10×)" if is_exponent else
                    f"a factor {math.exp(min(width, 700)):.3g} for {shown}")
            out.append(Flag(WIDE_INTERVAL, name,
                            f"the interval of {name} [{lo_r:.4g}, {hi_r:.4g}] spans more than a "
                            f"decade ({span}): the data do not determine {name}"))
    if "alpha" in intervals and len(good) >= MIN_REPLICATES_FOR_CORRELATION \
            and good[0].form != RECTIFIED:  # the A–α ridge of X; the rectified law has no X
        la = np.array([s.log_A for s in good])
        al = np.array([s.alpha for s in good])
        if np.std(la) > 0 and np.std(al) > 0:
            rho = float(np.corrcoef(la, al)[0, 1])
            lo, hi = intervals["alpha"]
            if abs(rho) >= CORRELATION_TOL and hi - lo > CORRELATED_EXPONENT_WIDTH:
                out.append(Flag(CORRELATED_PARAMETERS, "alpha",
                                f"A and α trade off along one ridge across the bootstrap "
                                f"(ρ(log A, α) = {rho:.4f}) and α is uncertain by "
                                f"{hi - lo:.2g}: the X range does not pin the exponent; read A "
                                "and α together and widen the range of X"))
    return out


def heldout_flag(delta_fit: float, delta_heldout: float | None) -> list[Flag]:
    """HeldOutMuchWorse: Δ_held-out above HELDOUT_RATIO × Δ_fit and above HELDOUT_FLOOR."""
    if delta_heldout is None or not math.isfinite(delta_heldout):
        return []
    if delta_heldout > HELDOUT_RATIO * delta_fit and delta_heldout > HELDOUT_FLOOR:
        ratio = delta_heldout / max(delta_fit, 1e-300)
        return [Flag(HELD_OUT_MUCH_WORSE, None,
                     f"held-out error {delta_heldout:.3g} is {ratio:.3g}× the fit error "
                     f"{delta_fit:.3g}: the law does not extrapolate to the held-out runs")]
    return []


def replicate_flag(requested: int, converged: int) -> list[Flag]:
    """ReplicatesDropped: fewer than REPLICATES_KEPT_MIN of the bootstrap replicates converged."""
    if requested > 0 and converged < REPLICATES_KEPT_MIN * requested:
        what = ("the intervals come from those and understate the uncertainty" if converged >= 2
                else "so there are no intervals")
        return [Flag(REPLICATES_DROPPED, None,
                     f"only {converged} of {requested} bootstrap replicates converged; {what}")]
    return []


def law_flags(*, params, convergence, stage1, x: np.ndarray, d: np.ndarray, y: np.ndarray,
              pred: np.ndarray, fit_mask: np.ndarray, delta_fit: float,
              delta_heldout: float | None, intervals: dict, samples: Sequence,
              requested: int, level: float, check_design: bool) -> tuple[Flag, ...]:
    """Every flag of one fitted law, in a fixed order (see the module docstring).

    x, d, y, pred: all points of the law's table (x is 1 for the single law); fit_mask picks
    the fitting points. samples: bootstrap LawParams (None = dropped replicate); requested:
    replicates asked for (0 = no bootstrap). check_design: whether this law's own design
    decided its α and β (False for stage-2 laws, whose β came from the pooled stage 1).
    """
    fx, fd, fy = np.log(x[fit_mask]), np.log(d[fit_mask]), y[fit_mask]
    flags = convergence_flags(convergence, stage1)
    flags += flat_flag(pred[fit_mask], fy, delta_fit)
    if check_design and params.form != SINGLE:
        flags += design_flags(fx, fd)
    flags += bound_flags(params, fx, fd, fy)
    exact = delta_fit <= EXACT_FIT_RTOL * float(np.mean(np.abs(fy)))
    flags += interval_flags(intervals, samples, level, fx, fd, exact)
    if requested:
        flags += replicate_flag(requested, sum(s is not None for s in samples))
    flags += heldout_flag(delta_fit, delta_heldout)
    return tuple(flags)
