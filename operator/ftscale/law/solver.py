"""Minimising the Huber objective: starting points and the L-BFGS-B polish.

Two ways to find a start (docs/law.md has the measurements behind the default):

* `varpro` (default): variable projection. For fixed exponents the law is linear in its
  coefficients (A, B, E), so for every cell of a dense grid over the free exponents the
  coefficients are solved by iteratively reweighted least squares (IRLS, the Huber weights
  min(1, δ/|r|)), all cells at once in numpy; the best cell starts one L-BFGS-B polish of the
  full objective. This is exact for the raw residual and a start for the log residual.
* `grid`: Chinchilla-style multi-start, one L-BFGS-B run from every point of a Cartesian grid
  over all free parameters; the lowest objective wins.

Either way the polish runs L-BFGS-B with exact gradients on the summed objective divided by
δ·Σw (≈ mean |residual| far from the optimum), with tolerances far below that scale, and the
result is judged by our own scale-free stationarity test rather than by the optimiser's flag
(the Epoch critique of Chinchilla: a fit that "succeeded" can stop short of the minimum).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ftscale.law.model import (ADDITIVE, RECTIFIED, Points, batch_jacobian, batch_objective,
                               huber, layout_names, objective_and_gradient)

# --- optimiser constants ------------------------------------------------------------------
# The scaled objective is ~mean|r| (1e-3..1e-1 for losses in nats); L-BFGS-B's ftol test is
# relative to max(|f|, 1), so ftol must sit far below 1e-3 to not stop early: 1e-15 leaves the
# stop to the line search/gradient tests, which is what we want.
FTOL = 1e-15
# Projected-gradient tolerance on the scaled objective; gradients there are O(1e-3..1) far
# from the optimum.
GTOL = 1e-12
MAXITER = 3000
MAXCOR = 20
MAXLS = 60
# A fit is "converged" when every free gradient entry is below this fraction of the largest
# gradient that entry could have (all residuals at ±δ pulling the same way). Dimensionless,
# so it means the same for 10 points or 10,000 and for raw or log residuals.
STATIONARITY_TOL = 1e-4
# Exponent bounds: wide enough for any real finetuning law (the paper's |α|,|β| ≤ 0.52, PET
# exponents slightly negative); an optimum on them is reported as not converged.
EXPONENT_BOUNDS = (-2.0, 6.0)
# Log-coefficient bounds in normalised units: e^±60 spans any loss in nats.
LOGCOEF_BOUNDS = (-60.0, 60.0)

# Variable-projection grid over each free exponent: step 0.1 where laws live, coarser beyond;
# the best cell is then refined on a ±0.1 grid of step 0.02 (two passes cost ~1/3 of one
# fine grid, measured in docs/law.md), and the polish does the rest.
VARPRO_EXPONENTS = np.unique(np.concatenate([
    np.linspace(-0.3, 1.0, 14),
    np.linspace(1.25, 3.0, 8),
]))
REFINE_OFFSETS = np.linspace(-0.1, 0.1, 11)
IRLS_ITERATIONS = 25

# Chinchilla-style multi-start grid (normalised units, so coefficients start near the losses).
GRID_EXPONENTS = (0.0, 0.5, 1.0, 1.5, 2.0)
GRID_LOGCOEF = (-3.0, -2.0, -1.0, 0.0, 1.0)
GRID_E = (-1.0, -0.5, 0.0, 0.5, 1.0)

STRATEGIES = ("varpro", "grid")


@dataclass(frozen=True)
class Convergence:
    """How one minimisation ended. `converged` is the verdict the reports show."""

    converged: bool
    stationarity: float  # max_j |∂F/∂θ_j| / (δ Σ_i w_i |∂r_i/∂θ_j|) over free entries
    at_bound: tuple[str, ...]  # free parameters that ended on their bound
    iterations: int
    evaluations: int
    message: str
    objective: float  # Σ w Huber(r), unscaled
    start_on_grid_edge: bool  # the best start was at an edge of the start grid
    strategy: str

    def to_dict(self) -> dict:
        return {
            "converged": self.converged,
            "stationarity": self.stationarity,
            "at_bound": list(self.at_bound),
            "iterations": self.iterations,
            "evaluations": self.evaluations,
            "message": self.message,
            "objective": self.objective,
            "start_on_grid_edge": self.start_on_grid_edge,
            "strategy": self.strategy,
        }


# The rectified law (Lin et al.): α is the outer power of the inner sum and must stay positive
# (α ≤ 0 makes the loss grow with data or constant); 10 is far above the α ≈ 0.5–2 of real
# fits. β must stay positive too (β → 0 makes D^β constant, indistinguishable from D_l).
RECTIFIED_ALPHA_BOUNDS = (0.05, 10.0)
RECTIFIED_BETA_BOUNDS = (0.01, 6.0)
# ... except that α at its upper bound is no failure: as α grows the law tends smoothly to its
# exponential limit e^f·exp(e^c·g) (ftscale.law.model), which is a law like any other — a curve
# in that limit has its α undetermined (flagged AtBound(alpha) by the diagnostics), not its
# predictions. Judged like a fixed α: the other parameters must be stationary.
# A rectified replicate that the batched LM leaves unconverged (its few points put most
# residuals outside ±δ, where the Huber loss has kinks LM cannot step across) gets the scalar
# polish with this many iterations at most: measured on planted curves, the replicates that
# converge at all do so within ~300, and the rest ran to 3,000 (0.7 s each) only to be dropped.
RECTIFIED_REPLICATE_MAXITER = 400


def soft_bound(form: str, name: str, value: float) -> bool:
    return form == RECTIFIED and name == "alpha" and value >= RECTIFIED_ALPHA_BOUNDS[1] - 1e-9


def bounds_for(form: str, n_factors: int) -> list[tuple[float, float]]:
    if form == RECTIFIED:
        return [RECTIFIED_BETA_BOUNDS, LOGCOEF_BOUNDS, LOGCOEF_BOUNDS, LOGCOEF_BOUNDS,
                RECTIFIED_ALPHA_BOUNDS]
    out = []
    for name in layout_names(form, n_factors):
        out.append(EXPONENT_BOUNDS if name.startswith(("alpha", "beta")) else LOGCOEF_BOUNDS)
    return out


def polish(theta0: np.ndarray, pts: Points, form: str, residual: str, delta: float,
           free: np.ndarray, *, edge: bool = False, strategy: str = "varpro",
           maxiter: int = MAXITER) -> tuple[np.ndarray, Convergence]:
    """One L-BFGS-B run over the free entries of theta0 (a boolean mask); returns the optimum
    and its Convergence. Never raises for a poor fit: the verdict is in the Convergence."""
    theta = np.array(theta0, dtype=float)
    idx = np.flatnonzero(free)
    scale = delta * float(np.sum(pts.w))
    names = layout_names(form, pts.n_factors)
    bnds = [bounds_for(form, pts.n_factors)[i] for i in idx]

    def fun(x):
        th = theta.copy()
        th[idx] = x
        value, grad = objective_and_gradient(th, pts, form, residual, delta)
        return value / scale, grad[idx] / scale

    x0 = np.clip(theta[idx], [b[0] for b in bnds], [b[1] for b in bnds])
    res = minimize(fun, x0, jac=True, method="L-BFGS-B", bounds=bnds,
                   options={"maxiter": maxiter, "ftol": FTOL, "gtol": GTOL,
                            "maxcor": MAXCOR, "maxls": MAXLS})
    theta[idx] = res.x
    conv = judge(theta, pts, form, residual, delta, free, res, edge, strategy)
    return theta, conv


def judge(theta, pts, form, residual, delta, free, res, edge, strategy) -> Convergence:
    """Scale-free stationarity test plus bound check (see STATIONARITY_TOL)."""
    names = layout_names(form, pts.n_factors)
    value, grad, gscale = objective_and_gradient(theta, pts, form, residual, delta,
                                                 want_scale=True)
    all_bounds = bounds_for(form, pts.n_factors)
    at_bound = []
    ratios = []
    for i in np.flatnonzero(free):
        lo, hi = all_bounds[i]
        on_bound = theta[i] <= lo + 1e-9 or theta[i] >= hi - 1e-9
        if on_bound:
            if not soft_bound(form, names[i], theta[i]):
                at_bound.append(names[i])
            continue
        ratios.append(abs(grad[i]) / max(gscale[i], 1e-300))
    stationarity = float(max(ratios)) if ratios else 0.0
    converged = bool(stationarity <= STATIONARITY_TOL and not at_bound
                     and np.all(np.isfinite(theta)))
    msg = res.message if isinstance(res.message, str) else str(res.message)
    return Convergence(converged, stationarity, tuple(at_bound), int(res.nit), int(res.nfev),
                       msg, float(value), bool(edge), strategy)


# ---- many bootstrap replicates at once -------------------------------------------------
# Levenberg–Marquardt on the Huber objective, all replicates in one array: Gauss–Newton
# curvature J^T·diag(w·[|r| ≤ δ])·J (exact for the quadratic part of the Huber function),
# damped by λ·diag(J^T·diag(w·min(1, δ/|r|))·J) (the IRLS curvature, positive even where no
# residual is inside ±δ). A step is taken only where it lowers that replicate's objective.
# From the full-data optimum a replicate typically needs 5–20 such steps; each costs a few
# array operations over all replicates instead of ~20 L-BFGS-B iterations of Python per
# replicate (docs/law.md §7).
LM_MAX_STEPS = 60
# The rectified law is fitted to one model's 6–15 subsets, so most residuals lie outside ±δ and
# the Gauss–Newton curvature (points inside ±δ only) is rank-deficient: LM stalled at the
# Huber loss's kinks and 9 in 10 replicates fell back to a scalar polish of ~1,000 L-BFGS-B
# iterations. For this form the curvature is the IRLS one, J^T·diag(w·min(1, δ/|r|))·J — the
# quadratic that majorises the Huber loss at the current residuals, so every accepted step is
# a descent step across the kinks; it converges linearly, hence more (cheap, batched) steps.
LM_MAX_STEPS_RECTIFIED = 400
LM_LAMBDA0 = 1e-3
LM_LAMBDA_UP, LM_LAMBDA_DOWN = 8.0, 4.0
LM_LAMBDA_MAX = 1e12
# Stop a replicate once its stationarity ratio is this far below STATIONARITY_TOL: the
# optimum is then known far more precisely than any interval needs.
LM_STATIONARITY = 1e-3 * STATIONARITY_TOL


def _bounds_arrays(form: str, n_factors: int) -> tuple[np.ndarray, np.ndarray]:
    b = np.array(bounds_for(form, n_factors))
    return b[:, 0], b[:, 1]


def _rowdot(weights: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """Σ_i weights[b, i]·jac[b, i, :] for every row b (B × P)."""
    return (weights[:, None, :] @ jac)[:, 0, :]


def _batch_stationarity(r, jac, ws, delta, mask):
    """The stationarity ratio of judge() per row, over the entries in mask (B × P or P)."""
    grad = _rowdot(ws * np.clip(r, -delta, delta), jac)
    scale = delta * _rowdot(ws, np.abs(jac))
    ratio = np.abs(grad) / np.maximum(scale, 1e-300)
    return np.max(np.where(mask, ratio, 0.0), axis=1)


def polish_many(theta0: np.ndarray, pts: Points, ys: np.ndarray, ws: np.ndarray, form: str,
                residual: str, delta: float, free: np.ndarray, *,
                strategy: str = "varpro") -> tuple[np.ndarray, list[Convergence]]:
    """Polish B replicates of one problem: pts is the shared design (its y and w unused), ys
    and ws (B × n) each replicate's losses and weights, theta0 the start (P,) or per-row starts
    (B × P; fixed entries may differ per row). Returns (B × P optima, B Convergences).

    Each row is judged exactly as polish() judges one fit; a row that the batched
    Levenberg–Marquardt leaves unconverged or on a bound is polished by polish() from its
    start instead, so the verdicts mean the same thing either way. Rows never interact:
    the result of a row does not depend on the others.
    """
    B = ys.shape[0]
    starts = np.array(np.broadcast_to(theta0, (B, len(free))), dtype=float)
    theta = starts.copy()
    lo, hi = _bounds_arrays(form, pts.n_factors)
    fidx = np.flatnonzero(free)
    theta[:, fidx] = np.clip(theta[:, fidx], lo[fidx], hi[fidx])
    lam = np.full(B, LM_LAMBDA0)
    value = batch_objective(theta, pts, ys, ws, form, residual, delta)
    steps = np.zeros(B, dtype=int)
    evals = np.ones(B, dtype=int)
    active = np.ones(B, dtype=bool)
    eye = np.eye(fidx.size)
    for _ in range(LM_MAX_STEPS_RECTIFIED if form == RECTIFIED else LM_MAX_STEPS):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        th = theta[rows]
        r, jac = batch_jacobian(th, pts, ys[rows], form, residual)
        w = ws[rows]
        stat = _batch_stationarity(r, jac, w, delta, free[None, :])
        done = stat <= LM_STATIONARITY
        active[rows[done]] = False
        keep = ~done
        rows, th, r, jac, w = rows[keep], th[keep], r[keep], jac[keep], w[keep]
        if rows.size == 0:
            break
        jf = jac[:, :, fidx]
        absr = np.abs(r)
        inside = w * (absr <= delta)
        irls = w * np.minimum(1.0, delta / np.maximum(absr, 1e-300))
        # batched matmuls, not einsums: numpy runs those as plain loops here (4–8× slower)
        grad = _rowdot(w * np.clip(r, -delta, delta), jf)
        gn = (jf.transpose(0, 2, 1) * (irls if form == RECTIFIED else inside)[:, None, :]) @ jf
        damp = _rowdot(irls, jf * jf)
        damp = np.maximum(damp, 1e-12 * np.max(damp, axis=1, keepdims=True) + 1e-300)
        system = gn + lam[rows, None, None] * damp[:, :, None] * eye[None]
        try:
            step = -np.linalg.solve(system, grad[..., None])[..., 0]
        except np.linalg.LinAlgError:  # an exactly singular row: leave the batch to polish()
            active[rows] = False
            break
        trial = th.copy()
        trial[:, fidx] = np.clip(th[:, fidx] + step, lo[fidx], hi[fidx])
        new_value = batch_objective(trial, pts, ys[rows], w, form, residual, delta)
        evals[rows] += 1
        better = np.isfinite(new_value) & (new_value < value[rows])
        theta[rows[better]] = trial[better]
        value[rows[better]] = new_value[better]
        steps[rows[better]] += 1
        lam[rows] = np.where(better, lam[rows] / LM_LAMBDA_DOWN, lam[rows] * LM_LAMBDA_UP)
        stuck = lam[rows] > LM_LAMBDA_MAX  # no step lowers the objective: as far as LM goes
        active[rows[stuck]] = False
    convs = _judge_rows(theta, pts, ys, ws, form, residual, delta, free, steps, evals,
                        strategy)
    for b in np.flatnonzero([not c.converged for c in convs]):
        # LM could not reach a stationary point (typically E or an exponent drifting to a
        # bound): the replicate gets exactly the scalar polish a one-at-a-time bootstrap
        # would give it, from the same start (restarting from where LM stalled doubled the
        # time of a study's bootstrap, docs/law.md §5).
        theta[b], convs[b] = polish(theta[b] if form == RECTIFIED else starts[b],
                                    pts.with_weights(ws[b], ys[b]), form, residual,
                                    delta, free, strategy=strategy)
    return theta, convs


def _judge_rows(theta, pts, ys, ws, form, residual, delta, free, steps, evals,
                strategy) -> list[Convergence]:
    """judge() for every row at once: the same stationarity ratio, bound test and verdict."""
    r, jac = batch_jacobian(theta, pts, ys, form, residual)
    lo, hi = _bounds_arrays(form, pts.n_factors)
    on_bound = free[None, :] & ((theta <= lo + 1e-9) | (theta >= hi - 1e-9))
    stat = _batch_stationarity(r, jac, ws, delta, free[None, :] & ~on_bound)
    value = np.sum(ws * huber(r, delta), axis=1)
    finite = np.all(np.isfinite(theta), axis=1)
    names = layout_names(form, pts.n_factors)
    out = []
    for b in range(theta.shape[0]):
        at_bound = tuple(names[i] for i in np.flatnonzero(on_bound[b])
                         if not soft_bound(form, names[i], theta[b, i]))
        ok = bool(stat[b] <= STATIONARITY_TOL and not at_bound and finite[b])
        out.append(Convergence(ok, float(stat[b]), at_bound, int(steps[b]), int(evals[b]),
                               "batched Levenberg-Marquardt", float(value[b]), False,
                               strategy))
    return out


# ---- starts --------------------------------------------------------------------------------

def varpro_start(pts: Points, form: str, delta: float, fixed: dict[int, float],
                 exponents: np.ndarray = VARPRO_EXPONENTS) -> tuple[np.ndarray, bool]:
    """Coarse variable-projection grid, then a finer grid around its best cell (see
    _varpro_grid). Returns (theta, best coarse cell on the grid's edge)."""
    free_exp = [i for i in (0, 3) if i not in fixed]
    theta, edge = _varpro_grid(pts, form, delta, fixed, [exponents] * len(free_exp))
    if free_exp:
        axes = [theta[i] + REFINE_OFFSETS for i in free_exp]
        theta, _ = _varpro_grid(pts, form, delta, fixed, axes)
    return theta, edge


def _varpro_grid(pts: Points, form: str, delta: float, fixed: dict[int, float],
                 axes: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    """Best start for a one-factor problem by variable projection over the free exponents.

    fixed maps layout index -> value (e.g. {0: β, 1: e} in stage 2, {3: 0.0} for the single
    law). Returns (theta, best cell on the grid's edge). The inner problem is always solved with
    the raw residual: that makes it linear; the polish then uses the requested residual.
    """
    if pts.n_factors != 1:
        raise ValueError("varpro_start handles one factor at a time")
    is_add = form == ADDITIVE
    # indices in the K=1 layout
    I_BETA, I_E, I_A, I_ALPHA, I_B = 0, 1, 2, 3, 4
    free_exp = [i for i in (I_BETA, I_ALPHA) if i not in fixed]
    cells = np.array(list(itertools.product(*axes))) if free_exp else np.zeros((1, 0))
    G = len(cells)

    def exp_value(i):
        if i in fixed:
            return np.full(G, fixed[i])
        return cells[:, free_exp.index(i)]

    beta, alpha = exp_value(I_BETA)[:, None], exp_value(I_ALPHA)[:, None]
    u, v = pts.u[None, :], pts.v[None, :]
    # basis columns per coefficient (G × n), and the offset from fixed coefficients
    if is_add:
        basis = {I_A: np.exp(-alpha * u), I_B: np.exp(-beta * v)}
    else:
        basis = {I_A: np.exp(-alpha * u - beta * v)}
    basis[I_E] = np.ones((G, pts.u.size))
    offset = np.zeros((G, pts.u.size))
    cols = []
    for i, col in basis.items():
        if i in fixed:
            offset += np.exp(fixed[i]) * col
        else:
            cols.append((i, col))
    z = pts.y[None, :] - offset
    C = np.stack([c for _, c in cols], axis=1)  # G × m × n
    m = C.shape[1]
    omega = np.broadcast_to(pts.w, (G, pts.u.size)).copy()
    floor = 1e-9 * float(np.mean(pts.y))
    coef = np.zeros((G, m))
    for _ in range(IRLS_ITERATIONS):
        M = np.einsum("gin,gjn,gn->gij", C, C, omega)
        rhs = np.einsum("gin,gn,gn->gi", C, omega, z)
        ridge = 1e-12 * np.trace(M, axis1=1, axis2=2)[:, None, None] * np.eye(m)[None]
        coef = np.linalg.solve(M + ridge + 1e-300 * np.eye(m)[None], rhs[..., None])[..., 0]
        coef = np.maximum(coef, floor)  # coefficients are positive by construction of the law
        r = np.einsum("gin,gi->gn", C, coef) - z
        omega = pts.w[None, :] * np.minimum(1.0, delta / np.maximum(np.abs(r), 1e-300))
    score = huber(np.einsum("gin,gi->gn", C, coef) - z, delta) @ pts.w
    best = int(np.nanargmin(score))
    theta = np.zeros(5 if is_add else 4)
    for i, value in fixed.items():
        theta[i] = value
    for j, i in enumerate(free_exp):
        theta[i] = cells[best, j]
    for j, (i, _) in enumerate(cols):
        theta[i] = np.log(coef[best, j])
    edge = any(cells[best, j] in (axes[j][0], axes[j][-1]) for j in range(len(free_exp)))
    return theta, bool(edge)


def grid_starts(form: str, fixed: dict[int, float], n_factors: int = 1):
    """Cartesian grid over every free parameter (Chinchilla Approach 3 style), with each
    start's 'on an edge' flag."""
    names = layout_names(form, n_factors)
    axes = []
    for i, name in enumerate(names):
        if i in fixed:
            axes.append((fixed[i],))
        elif name.startswith(("alpha", "beta")):
            axes.append(GRID_EXPONENTS)
        elif name == "e":
            axes.append(GRID_E)
        else:
            axes.append(GRID_LOGCOEF)
    for combo in itertools.product(*axes):
        edge = any(len(ax) > 1 and (val == ax[0] or val == ax[-1]) for val, ax in zip(combo, axes))
        yield np.array(combo, dtype=float), edge


def minimise_one_factor(pts: Points, form: str, residual: str, delta: float,
                        fixed: dict[int, float], strategy: str = "varpro"):
    """Global minimisation of a one-factor problem. Returns (theta, Convergence)."""
    if form == RECTIFIED:
        return minimise_rectified(pts, residual, delta, strategy)
    n = 5 if form == ADDITIVE else 4
    free = np.ones(n, dtype=bool)
    for i in fixed:
        free[i] = False
    if strategy == "varpro":
        theta0, edge = varpro_start(pts, form, delta, fixed)
        return polish(theta0, pts, form, residual, delta, free, edge=edge, strategy=strategy)
    if strategy != "grid":
        raise ValueError(f"unknown strategy {strategy!r}; use one of {STRATEGIES}")
    best = None
    for theta0, edge in grid_starts(form, fixed):
        theta, conv = polish(theta0, pts, form, residual, delta, free, edge=edge,
                             strategy=strategy)
        if best is None or conv.objective < best[1].objective:
            best = (theta, conv)
    return best


# ---- the rectified law (Lin et al., ICML 2024) -----------------------------------------------
# L = (B / (D_l + D^β) + E)^α. For fixed (β, D_l, α) the inner sum L^(1/α) = B·g(D) + E with
# g = 1 / (D_l + D^β) is linear in (B, E): the same variable projection as above, on the
# transformed losses y^(1/α) (a start, not the objective: the polish minimises the Huber loss
# of L̂ − L itself). The grid spans the exponents of real fits and a knee D_k = D_l^(1/β) from
# well below the smallest data size (a pure power phase) to above the largest (a flat,
# pre-power-only curve). The objective is multimodal along the knee, so the best few distinct
# cells are each polished and the lowest objective wins.
RECTIFIED_BETA_GRID = np.array([0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.25, 1.5, 2.0])
RECTIFIED_ALPHA_GRID = np.array([0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 3.0])
RECTIFIED_KNEE_STEP = 0.5  # in natural-log units of D (a factor 1.65)
RECTIFIED_KNEE_MARGIN = (3.0, 1.0)  # knees searched from 3 below the smallest log D to 1 above
RECTIFIED_POLISHED_STARTS = 4


def rectified_grid(pts: Points) -> np.ndarray:
    """Start cells (β, l, α) in normalised units: l = β·v_knee."""
    knees = np.arange(pts.v.min() - RECTIFIED_KNEE_MARGIN[0],
                      pts.v.max() + RECTIFIED_KNEE_MARGIN[1] + 1e-9, RECTIFIED_KNEE_STEP)
    cells = np.array(list(itertools.product(RECTIFIED_BETA_GRID, knees, RECTIFIED_ALPHA_GRID)))
    cells[:, 1] *= cells[:, 0]
    return cells


def rectified_starts(pts: Points, delta: float, n_best: int = RECTIFIED_POLISHED_STARTS):
    """The n_best grid cells (θ in the [β, f, c, l, α] layout) by Huber objective of L̂ − L,
    coefficients solved by IRLS on the transformed losses; each with its 'on the grid edge'
    flag."""
    cells = rectified_grid(pts)
    beta, l, alpha = cells[:, 0:1], cells[:, 1:2], cells[:, 2:3]
    g = np.exp(-np.logaddexp(l, beta * pts.v[None, :]))  # G × n
    z = pts.y[None, :] ** (1.0 / alpha)  # transformed losses, G × n
    ones = np.ones_like(g)
    omega = np.broadcast_to(pts.w, g.shape).copy()
    floor = 1e-9 * np.mean(z, axis=1)
    for _ in range(IRLS_ITERATIONS):
        s_gg, s_g1, s_11 = (omega * g * g).sum(1), (omega * g).sum(1), omega.sum(1)
        r_g, r_1 = (omega * g * z).sum(1), (omega * z).sum(1)
        det = s_gg * s_11 - s_g1 ** 2
        det = np.where(np.abs(det) > 1e-300, det, 1e-300)
        coef_b = np.maximum((r_g * s_11 - r_1 * s_g1) / det, floor)
        coef_e = np.maximum((r_1 - coef_b * s_g1) / np.maximum(s_11, 1e-300), floor)
        inner = coef_b[:, None] * g + coef_e[:, None] * ones
        omega = pts.w[None, :] * np.minimum(
            1.0, delta / np.maximum(np.abs(inner - z), 1e-300))
    pred = (coef_b[:, None] * g + coef_e[:, None]) ** alpha
    score = huber(pred - pts.y[None, :], delta) @ pts.w
    score = np.where(np.isfinite(score), score, np.inf)
    order = np.argsort(score, kind="stable")
    out, seen = [], set()
    for i in order:
        key = (cells[i, 0], round(cells[i, 1] / cells[i, 0], 6))  # one start per (β, knee)
        if key in seen:
            continue
        seen.add(key)
        a = cells[i, 2]  # to the [β, f, c, l, α] layout (ftscale.law.model)
        theta = np.array([cells[i, 0], a * np.log(coef_e[i]),
                          np.log(a) + np.log(coef_b[i]) - np.log(coef_e[i]), cells[i, 1], a])
        edge = bool(cells[i, 0] in (RECTIFIED_BETA_GRID[0], RECTIFIED_BETA_GRID[-1])
                    or cells[i, 2] in (RECTIFIED_ALPHA_GRID[0], RECTIFIED_ALPHA_GRID[-1]))
        out.append((theta, edge))
        if len(out) == n_best:
            break
    return out


def minimise_rectified(pts: Points, residual: str, delta: float, strategy: str = "varpro"):
    """Global minimisation of the rectified law: the best few grid starts, each polished by
    L-BFGS-B; the lowest objective wins. Returns (theta, Convergence)."""
    free = np.ones(5, dtype=bool)
    best = None
    for theta0, edge in rectified_starts(pts, delta):
        theta, conv = polish(theta0, pts, RECTIFIED, residual, delta, free, edge=edge,
                             strategy=strategy)
        if best is None or conv.objective < best[0]:
            best = (conv.objective, theta, conv)
    return best[1], best[2]
