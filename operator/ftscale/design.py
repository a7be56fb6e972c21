"""Adaptive study design: which runs of the candidate grid to start next (docs/law.md,
"Adaptive design"). One pure function, `next_runs`; nothing here starts a run or reads a
cluster.

Each method has its own multiplicative law L = A·X^−α·D^−β + E (docs/law.md), fitted by
`ftscale.law.fit.fit_law` to the method's finished runs. The user names a *target*:

- `extrapolation`: the loss of each method at one (X, D), usually the largest of the grid;
- `critical`: log of the critical data size D_c where two methods' laws cross at one X
  (ftscale.law.critical).

The criterion is c-optimality (the Fisher information of the law's parameters, projected on
the target): with J the Jacobian of the fitted law's predictions at a method's runs and
M = JᵀJ/σ² + a weak prior, the linearised variance of the target is Σ_m c_mᵀ M_m⁻¹ c_m, where
c_m is the target's gradient with respect to method m's parameters. One more run with
Jacobian row j lowers it by (cᵀM⁻¹j)² / (σ² + jᵀM⁻¹j) (Sherman–Morrison) — a closed form that
needs no refit and no observed loss, so every candidate is scored in microseconds and a batch
is chosen greedily: take the best reduction per estimated GPU-hour, add its row to M, rescore.
Runs already started but not finished (`pending`) are added to M the same way, since their
information does not depend on the loss they will report.

The stop rule: the target's 95 % interval half-width (1.96·√variance, for `extrapolation` the
widest over methods) is at most `stop_half_width`, or no candidate is left, or the next batch
would exceed `budget_gpu_hours`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ftscale.law.critical import crossings
from ftscale.law.errors import FitError, LawInputError
from ftscale.law.fit import LawParams, fit_law
from ftscale.law.model import MULTIPLICATIVE

EXTRAPOLATION = "extrapolation"
CRITICAL = "critical"
TARGETS = (EXTRAPOLATION, CRITICAL)
Z95 = 1.959963984540054
# Prior precision on each (centred) law parameter: a standard deviation of 10 in log A, α,
# β, log E is far wider than any real fit, so the prior only keeps M invertible while a
# method has fewer runs than parameters.
PRIOR_PRECISION = 1e-2
# The seed design: corners and centre of the method's log X × log D box.
SEED_POINTS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5))
# A method needs this many finished runs (the law's 4 parameters + 1) before it is refitted.
MIN_RUNS_TO_FIT = 5


@dataclass(frozen=True)
class Candidate:
    """One run of the candidate grid: its id, method, X (model parameters) and D (examples)."""

    run_id: str
    method: str
    x: float
    d: float


@dataclass(frozen=True)
class Target:
    """What the user wants to know. extrapolation: loss of `methods` at (x, d), d one value
    or one per method (methods trained on different data ranges, e.g. FMT and PET);
    critical: log D_c between methods[0] and methods[1] at x (d unused)."""

    kind: str
    methods: tuple[str, ...]
    x: float
    d: float | Mapping[str, float] | None = None

    def d_for(self, method: str) -> float:
        return float(self.d[method] if isinstance(self.d, Mapping) else self.d)

    def __post_init__(self):
        if self.kind not in TARGETS:
            raise ValueError(f"unknown target {self.kind!r}; use one of {TARGETS}")
        if self.kind == CRITICAL and len(self.methods) != 2:
            raise ValueError("a critical-data-size target names exactly two methods")
        if self.kind == EXTRAPOLATION and self.d is None:
            raise ValueError("an extrapolation target needs d")


@dataclass(frozen=True)
class Choice:
    """One run to start next and why (a sentence with the numbers)."""

    run_id: str
    gpu_hours: float
    variance_reduction: float  # of the target, in its own units squared; nan for seed runs
    reason: str


@dataclass(frozen=True)
class Plan:
    """The planner's answer: runs to start (may be empty), the stop reason when it stops,
    and the target's current estimate and 95 % half-width (nan before every method has a fit)."""

    choices: tuple[Choice, ...]
    stopped: str | None
    estimate: dict[str, float]
    half_width: float


# ---- the law's Jacobian in centred coordinates ----------------------------------------------
# Parameters per method: (log A', α, β, log E) with log A' = log A − α·x0 − β·d0, where
# (x0, d0) is the centre of the method's log X × log D box; centring keeps M well conditioned
# (raw log X ≈ 21, log D ≈ 12 would make the log A column nearly collinear with α and β).

def _centre(cands: Sequence[Candidate]) -> tuple[float, float]:
    lx = np.log([c.x for c in cands])
    ld = np.log([c.d for c in cands])
    return 0.5 * (lx.min() + lx.max()), 0.5 * (ld.min() + ld.max())


def jacobian(law: LawParams, x, d, centre: tuple[float, float]) -> np.ndarray:
    """∂L/∂(log A', α, β, log E) at each (x, d): rows of shape (n, 4)."""
    u = np.log(np.asarray(x, float)) - centre[0]
    v = np.log(np.asarray(d, float)) - centre[1]
    power = np.exp(law.log_predict(x, d)) - law.E  # A·X^−α·D^−β
    return np.stack([power, -u * power, -v * power, np.full_like(power, law.E)], axis=-1)


def information(rows: np.ndarray, sigma: float) -> np.ndarray:
    """M = JᵀJ/σ² plus the weak prior (PRIOR_PRECISION on each parameter)."""
    return rows.T @ rows / sigma ** 2 + PRIOR_PRECISION * np.eye(rows.shape[1])


def variance_reductions(cov: np.ndarray, c: np.ndarray, rows: np.ndarray,
                        sigma: float) -> np.ndarray:
    """Drop of cᵀ·cov·c when each row of `rows` is observed once with noise σ
    (Sherman–Morrison): (cᵀ·cov·j)² / (σ² + jᵀ·cov·j)."""
    cj = rows @ (cov @ c)
    jj = np.einsum("ij,jk,ik->i", rows, cov, rows)
    return cj ** 2 / (sigma ** 2 + jj)


def add_observation(cov: np.ndarray, row: np.ndarray, sigma: float) -> np.ndarray:
    """cov after one more observation with Jacobian row `row` (Sherman–Morrison)."""
    cr = cov @ row
    return cov - np.outer(cr, cr) / (sigma ** 2 + row @ cr)


# ---- the target's gradient -------------------------------------------------------------------

def target_gradients(target: Target, laws: Mapping[str, LawParams],
                     centres: Mapping[str, tuple[float, float]]):
    """(estimate per name, gradient per method): for extrapolation one gradient per method
    (its loss at the target point); for critical, ∂ log D_c / ∂θ of both methods by the
    implicit function theorem on h(s) = L1(x, e^s) − L2(x, e^s) = 0. None when the two laws
    do not cross (log D_c undefined)."""
    if target.kind == EXTRAPOLATION:
        est = {m: float(laws[m].predict(target.x, target.d_for(m))) for m in target.methods}
        grads = {m: jacobian(laws[m], [target.x], [target.d_for(m)], centres[m])[0]
                 for m in target.methods}
        return est, grads
    m1, m2 = target.methods
    found = crossings(laws[m1], laws[m2], target.x)
    if not found:
        return None
    dc = found[0]
    g1 = jacobian(laws[m1], [target.x], [dc], centres[m1])[0]
    g2 = jacobian(laws[m2], [target.x], [dc], centres[m2])[0]
    # ∂h/∂s: ∂L/∂(log D) = −β·(power term A·X^−α·D^−β) for each law
    p1 = float(laws[m1].predict(target.x, dc)) - laws[m1].E
    p2 = float(laws[m2].predict(target.x, dc)) - laws[m2].E
    h_s = -laws[m1].beta * p1 + laws[m2].beta * p2
    if h_s == 0.0:
        return None
    return {"log_critical_data_size": math.log(dc)}, {m1: -g1 / h_s, m2: g2 / h_s}


# ---- the seed design -------------------------------------------------------------------------

def seed_design(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Per method, the candidate nearest each SEED_POINTS corner/centre of its log X × log D
    box (distances in box-normalised units; ties to the cheaper, i.e. smaller X·D), without
    repeats. At most 5 runs per method."""
    out: list[Candidate] = []
    for method in sorted({c.method for c in candidates}):
        mine = [c for c in candidates if c.method == method]
        lx = np.log([c.x for c in mine])
        ld = np.log([c.d for c in mine])
        ux = (lx - lx.min()) / max(lx.max() - lx.min(), 1e-12)
        vd = (ld - ld.min()) / max(ld.max() - ld.min(), 1e-12)
        taken: set[int] = set()
        for px, pd in SEED_POINTS:
            dist = (ux - px) ** 2 + (vd - pd) ** 2
            order = sorted(range(len(mine)), key=lambda i: (round(dist[i], 12), lx[i] + ld[i]))
            for i in order:
                if i not in taken:
                    taken.add(i)
                    out.append(mine[i])
                    break
    return out


# ---- the planner -----------------------------------------------------------------------------

def fit_method(cands: Sequence[Candidate], results: Mapping[str, float]) -> LawParams | None:
    """The method's multiplicative law from its finished runs (no held-out split), or None
    when it cannot be fitted yet."""
    rows = [{"model_params": c.x, "data_size": c.d, "test_loss": results[c.run_id],
             "run_id": c.run_id} for c in cands if c.run_id in results]
    if len(rows) < MIN_RUNS_TO_FIT:
        return None
    try:
        return fit_law(rows, form=MULTIPLICATIVE, holdout="none")[0].params
    except (FitError, LawInputError):
        return None


def next_runs(candidates: Sequence[Candidate], results: Mapping[str, float], target: Target, *,
              batch_size: int, cost: Mapping[str, float], rng_seed: int = 0,
              sigma: float = 0.01, stop_half_width: float = 0.0,
              pending: Sequence[str] = (), budget_gpu_hours: float | None = None,
              spent_gpu_hours: float = 0.0) -> Plan:
    """The next batch of runs to start (see the module docstring).

    candidates: the grid's runs; results: run id → test loss of the finished ones; cost: run
    id → estimated GPU-hours; sigma: run-to-run noise of the loss (nats); pending: ids started
    but not finished; rng_seed only breaks exact ties, so equal inputs give equal plans.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    methods = sorted(set(target.methods))
    cands = [c for c in candidates if c.method in methods]
    busy = set(results) | set(pending)
    left = [c for c in cands if c.run_id not in busy]
    # a fixed random order that sorting keeps among exact ties
    rank = {c.run_id: i for i, c in enumerate(
        np.random.default_rng(rng_seed).permutation(np.array(left, dtype=object)))}

    def budget_allows(extra: float) -> bool:
        return budget_gpu_hours is None or spent_gpu_hours + extra <= budget_gpu_hours

    # 1. the seed design, for every method that has no law yet
    by_method = {m: [c for c in cands if c.method == m] for m in methods}
    centres = {m: _centre(by_method[m]) for m in methods if by_method[m]}
    laws = {m: fit_method(by_method[m], results) for m in methods}
    unfitted = [m for m in methods if laws[m] is None]
    if unfitted:
        seeds = [c for c in seed_design([c for c in cands if c.method in unfitted])
                 if c.run_id not in busy]
        choices, total = [], 0.0
        for c in seeds:
            if not budget_allows(total + cost[c.run_id]):
                continue
            total += cost[c.run_id]
            choices.append(Choice(c.run_id, cost[c.run_id], math.nan,
                                  f"seed design for {c.method} (corner/centre of log X × log D: "
                                  f"X={c.x:.3g}, D={c.d:.3g}), {cost[c.run_id]:.3g} GPU-h"))
        stopped = None if choices or left else "no candidate left"
        if not choices and left:
            stopped = "budget exhausted"
        return Plan(tuple(choices), stopped, {}, math.nan)

    # 2. the target's linearised variance and the stop rule
    tg = target_gradients(target, laws, centres)
    covs = {}
    for m in methods:
        done = [c for c in by_method[m] if c.run_id in results or c.run_id in pending]
        rows = jacobian(laws[m], [c.x for c in done], [c.d for c in done], centres[m])
        covs[m] = np.linalg.inv(information(rows, sigma))
    if tg is None:  # no crossing: fall back to D-optimality (the law's parameters as a whole)
        estimate, grads = {}, None
        half = math.inf
    else:
        estimate, grads = tg
        half = _half_width(target, grads, covs)
    if half <= stop_half_width:
        return Plan((), f"target met: 95% half-width {half:.4g} <= {stop_half_width:.4g}",
                    estimate, half)
    if not left:
        return Plan((), "no candidate left", estimate, half)

    # 3. greedy batch: best variance reduction per GPU-hour, rescored after each pick
    choices, total = [], 0.0
    pool = list(left)
    for _ in range(batch_size):
        best = None
        for m in methods:
            mine = [c for c in pool if c.method == m]
            if not mine:
                continue
            rows = jacobian(laws[m], [c.x for c in mine], [c.d for c in mine], centres[m])
            if grads is not None:
                gain = variance_reductions(covs[m], grads[m], rows, sigma)
            else:  # log-det gain of M: log(1 + jᵀ·cov·j/σ²)
                gain = np.log1p(np.einsum("ij,jk,ik->i", rows, covs[m], rows) / sigma ** 2)
            for c, row, g in zip(mine, rows, gain):
                h = cost[c.run_id]
                if not budget_allows(total + h):
                    continue
                key = (-g / h, rank[c.run_id])
                if best is None or key < best[0]:
                    best = (key, c, row, float(g), m)
        if best is None:
            break
        _, c, row, g, m = best
        h = cost[c.run_id]
        before = _half_width(target, grads, covs) if grads is not None else math.inf
        covs[m] = add_observation(covs[m], row, sigma)
        total += h
        pool.remove(c)
        if grads is not None:
            after = _half_width(target, grads, covs)
            reason = (f"{c.method} X={c.x:.3g} D={c.d:.3g}: lowers the target's variance by "
                      f"{g:.3g} ({g / h:.3g} per GPU-h; 95% half-width {before:.4g} -> "
                      f"{after:.4g}) for {h:.3g} GPU-h")
        else:
            reason = (f"{c.method} X={c.x:.3g} D={c.d:.3g}: the laws do not cross yet, so the "
                      f"most parameter information per GPU-h (log-det gain {g:.3g}) "
                      f"for {h:.3g} GPU-h")
        choices.append(Choice(c.run_id, h, g, reason))
    stopped = None if choices else "budget exhausted"
    return Plan(tuple(choices), stopped, estimate, half)


def _half_width(target: Target, grads: Mapping[str, np.ndarray],
                covs: Mapping[str, np.ndarray]) -> float:
    """95 % half-width of the target: per method for extrapolation (the widest is reported),
    summed over both methods for the critical data size."""
    var = {m: float(g @ covs[m] @ g) for m, g in grads.items()}
    if target.kind == EXTRAPOLATION:
        return Z95 * math.sqrt(max(var.values()))
    return Z95 * math.sqrt(sum(var.values()))
