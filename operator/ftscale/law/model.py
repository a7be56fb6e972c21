"""Law forms, their parameter layout, predictions and the Huber objective with exact gradients.

Everything here works in *normalised* units: u = log X − log X_ref (per factor) and
v = log D − log D_ref (one D_ref for the whole problem, because β and E are shared across
factors). Coefficients are log-parameterised (A = e^a, B = e^b, E = e^e) and predictions are
computed as a log-sum-exp in float64, so no exponent can overflow and no coefficient can turn
negative. `ftscale.law.fit` converts back to original units.

Parameter vector layout for K factors (k = 0..K-1):

    multiplicative: [β, e, a_0, α_0, a_1, α_1, ...]            log L̂ = LSE(a_k − α_k u − β v, e)
    additive:       [β, e, a_0, α_0, b_0, a_1, α_1, b_1, ...]  log L̂ = LSE(a_k − α_k u, b_k − β v, e)

The single-variable law A·D^−β + E is the multiplicative layout with K = 1, u ≡ 0 and α fixed
at 0, so it shares every line of code below.

The rectified law of Lin et al. (ICML 2024), L = (B / (D_l + D^β) + E)^α, one model at a time
(K = 1, no X), has its own layout [β, f, c, l, α]:

    rectified:      log L̂ = α · LSE(b − LSE(l, β v), e),   e = f/α,  b = c − log α + e

with l = log D_l − β·v_ref (so D^β is e^{β·v} in normalised units), f = α·log E and
c = log(α·B/E) − β·v_ref. In these coordinates L = e^f·(1 + e^c·g/α)^α with
g = 1/(D_l + D^β): f is the log loss floor, c the size of the data term, and α only bends the
curve — as α grows the law tends smoothly to e^f·exp(e^c·g). With (b, e) as coordinates the
same weakly determined α lies along a curved valley (α up, E towards 1, B down) on which the
optimiser crawled; here that valley is an axis.

Its functions (`_rectified_parts`, `_rectified_batch`) return log L̂ and its derivative with
respect to each parameter; the objective, the batched Jacobian and therefore the solver's
polish, judge and batched Levenberg–Marquardt use them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MULTIPLICATIVE = "multiplicative"
ADDITIVE = "additive"
SINGLE = "single"
RECTIFIED = "rectified"
# Forms of the study protocol and of LawOptions (the CRD's spec.law.forms). The rectified law
# is a per-model form of `ftscale fit` and `ftscale recommend --models`, not a study form.
FORMS = (MULTIPLICATIVE, ADDITIVE, SINGLE)
JOINT_FORMS = (MULTIPLICATIVE, ADDITIVE)
RECTIFIED_NAMES = ["beta", "f", "c", "l", "alpha"]

RAW = "raw"
LOG = "log"
RESIDUALS = (RAW, LOG)


def layout_names(form: str, n_factors: int) -> list[str]:
    """Names of the entries of the parameter vector (see the module docstring)."""
    if form == RECTIFIED:
        return list(RECTIFIED_NAMES)
    names = ["beta", "e"]
    for k in range(n_factors):
        names += [f"a{k}", f"alpha{k}"]
        if form == ADDITIVE:
            names.append(f"b{k}")
    return names


@dataclass(frozen=True)
class Points:
    """The data of one fit, already normalised. All arrays have one entry per point.

    u: log X − log X_ref of the point's factor; v: log D − log D_ref; k: factor index;
    y: observed loss (seed mean); w: weight of the point in the objective (1, or a bootstrap
    multiplicity).
    """

    u: np.ndarray
    v: np.ndarray
    k: np.ndarray
    y: np.ndarray
    w: np.ndarray
    n_factors: int

    def with_weights(self, w: np.ndarray, y: np.ndarray | None = None) -> "Points":
        return Points(self.u, self.v, self.k, self.y if y is None else y, w, self.n_factors)


def _stride(form: str) -> int:
    return 3 if form == ADDITIVE else 2


def log_predict(theta: np.ndarray, pts: Points, form: str) -> np.ndarray:
    """log L̂ for every point (float64 LSE)."""
    if form == RECTIFIED:
        return _rectified_parts(theta, pts.v)[0]
    lp, _ = _log_predict_and_parts(theta, pts, form, want_parts=False)
    return lp


def _rectified_parts(theta: np.ndarray, v: np.ndarray):
    """log L̂ (n) and ∂ log L̂ / ∂θ (n × 5) of the rectified law at normalised data sizes v."""
    lp, d = _rectified_batch(np.asarray(theta, float)[None, :], v)
    return lp[0], d[0]


def _rectified_batch(theta: np.ndarray, v: np.ndarray, want_parts: bool = True):
    """log L̂ (B × n) and ∂ log L̂ / ∂θ (B × n × 5) of the rectified law for B parameter rows
    (layout [β, f, c, l, α], module docstring)."""
    beta, f, c, l, alpha = (theta[:, i:i + 1] for i in range(5))
    e = f / alpha
    b = c - np.log(alpha) + e
    q = np.logaddexp(l, beta * v)  # log(D_l + D^β), normalised
    s = b - q  # log of the power term B / (D_l + D^β)
    g = np.logaddexp(s, e)  # log of the inner sum
    if not want_parts:
        return alpha * g, None
    p_s = np.exp(s - g)  # share of the power term in the inner sum
    r_v = np.exp(beta * v - q)  # share of D^β in D_l + D^β
    d = np.empty(g.shape + (5,))
    d[:, :, 0] = -alpha * p_s * r_v * v
    d[:, :, 1] = 1.0  # f scales the whole law
    d[:, :, 2] = alpha * p_s
    d[:, :, 3] = -alpha * p_s * (1.0 - r_v)
    d[:, :, 4] = g - p_s - e
    return alpha * g, d


def _log_predict_and_parts(theta, pts: Points, form: str, want_parts: bool):
    stride = _stride(form)
    beta, e = theta[0], theta[1]
    per = theta[2:].reshape(pts.n_factors, stride)
    a = per[pts.k, 0]
    alpha = per[pts.k, 1]
    if form == ADDITIVE:
        b = per[pts.k, 2]
        s1 = a - alpha * pts.u
        s2 = b - beta * pts.v
        m = np.maximum(np.maximum(s1, s2), e)
        t1, t2, te = np.exp(s1 - m), np.exp(s2 - m), np.exp(e - m)
        tot = t1 + t2 + te
        lp = m + np.log(tot)
        if not want_parts:
            return lp, None
        return lp, (t1 / tot, t2 / tot, te / tot)
    s1 = a - alpha * pts.u - beta * pts.v
    m = np.maximum(s1, e)
    t1, te = np.exp(s1 - m), np.exp(e - m)
    tot = t1 + te
    lp = m + np.log(tot)
    if not want_parts:
        return lp, None
    return lp, (t1 / tot, None, te / tot)


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber function: r²/2 inside ±δ, δ(|r| − δ/2) outside (continuous with its slope)."""
    ar = np.abs(r)
    return np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def residuals(theta: np.ndarray, pts: Points, form: str, residual: str) -> np.ndarray:
    lp = log_predict(theta, pts, form)
    if residual == LOG:
        return lp - np.log(pts.y)
    return np.exp(lp) - pts.y


def objective_and_gradient(theta: np.ndarray, pts: Points, form: str, residual: str,
                           delta: float, want_scale: bool = False):
    """Σ_i w_i·Huber_δ(r_i) and its exact gradient with respect to every entry of theta.

    r_i = L̂_i − L_i (raw, the paper's Eq. 2) or log L̂_i − log L_i (log, Chinchilla's Eq. 11).
    With want_scale, also returns Σ_i w_i·δ·|∂r_i/∂θ_j|: the largest gradient the objective
    could have, used to judge stationarity on a scale-free footing (ftscale.law.solver).
    """
    if form == RECTIFIED:
        return _rectified_objective(theta, pts, residual, delta, want_scale)
    lp, (p1, p2, pe) = _log_predict_and_parts(theta, pts, form, want_parts=True)
    if residual == LOG:
        r = lp - np.log(pts.y)
        chain = np.ones_like(lp)
    else:
        pred = np.exp(lp)
        r = pred - pts.y
        chain = pred  # ∂L̂/∂(log L̂)
    value = float(np.dot(pts.w, huber(r, delta)))
    psi = np.clip(r, -delta, delta)
    g = pts.w * psi * chain  # ∂F/∂(log L̂_i)
    # ∂(log L̂_i)/∂θ: the softmax weights of the LSE terms times the inner derivatives.
    stride = _stride(form)
    K = pts.n_factors
    grad = np.zeros_like(theta)
    scale = np.zeros_like(theta) if want_scale else None
    beta_term = p2 if form == ADDITIVE else p1
    parts = {  # column -> per-point derivative of log L̂ (factor-specific entries go via k)
        0: -pts.v * beta_term,
        1: pe,
    }
    for col, d in parts.items():
        grad[col] = np.dot(g, d)
        if want_scale:
            scale[col] = delta * np.dot(pts.w, np.abs(chain * d))
    per_point = [p1, -pts.u * p1] + ([p2] if form == ADDITIVE else [])
    for j, d in enumerate(per_point):
        grad[2 + j::stride] = np.bincount(pts.k, weights=g * d, minlength=K)
        if want_scale:
            scale[2 + j::stride] = delta * np.bincount(
                pts.k, weights=pts.w * np.abs(chain * d), minlength=K)
    if want_scale:
        return value, grad, scale
    return value, grad


def _rectified_objective(theta, pts: Points, residual: str, delta: float, want_scale: bool):
    lp, dlp = _rectified_parts(theta, pts.v)
    if residual == LOG:
        r, chain = lp - np.log(pts.y), np.ones_like(lp)
    else:
        pred = np.exp(lp)
        r, chain = pred - pts.y, pred
    value = float(np.dot(pts.w, huber(r, delta)))
    grad = (pts.w * np.clip(r, -delta, delta) * chain) @ dlp
    if want_scale:
        return value, grad, delta * (pts.w @ np.abs(chain[:, None] * dlp))
    return value, grad


# ---- many replicates at once (the bootstrap) ------------------------------------------------
# A bootstrap replicate keeps the design (u, v, k) and changes only the losses y and weights w,
# so B replicates are one (B × n) array problem. These mirror the functions above row by row.

def _per_point(coef: np.ndarray, pts: Points) -> np.ndarray:
    """B × K per-factor values -> B × n (each point takes its factor's value); a plain
    broadcast for one factor, the common case."""
    return coef[:, :1] if pts.n_factors == 1 else coef[:, pts.k]


def _batch_parts(theta: np.ndarray, pts: Points, form: str, want_parts: bool = True):
    """log L̂ (B × n) and (with want_parts) the softmax weights of its LSE terms, for B
    parameter rows."""
    stride = _stride(form)
    beta, e = theta[:, 0:1], theta[:, 1:2]
    a = _per_point(theta[:, 2::stride], pts)
    alpha = _per_point(theta[:, 3::stride], pts)
    if form == ADDITIVE:
        s1 = a - alpha * pts.u
        s2 = _per_point(theta[:, 4::stride], pts) - beta * pts.v
        lp = np.logaddexp(np.logaddexp(s1, s2), e)
        if not want_parts:
            return lp, None, None, None
        return lp, np.exp(s1 - lp), np.exp(s2 - lp), np.exp(e - lp)
    s1 = a - alpha * pts.u - beta * pts.v
    lp = np.logaddexp(s1, e)
    if not want_parts:
        return lp, None, None, None
    return lp, np.exp(s1 - lp), None, np.exp(e - lp)


def batch_residuals(theta: np.ndarray, pts: Points, ys: np.ndarray, form: str,
                    residual: str) -> np.ndarray:
    """Residuals (B × n) of B parameter rows against B loss rows ys."""
    lp = _rectified_batch(theta, pts.v, want_parts=False)[0] if form == RECTIFIED else \
        _batch_parts(theta, pts, form, want_parts=False)[0]
    return lp - np.log(ys) if residual == LOG else np.exp(lp) - ys


def batch_objective(theta: np.ndarray, pts: Points, ys: np.ndarray, ws: np.ndarray,
                    form: str, residual: str, delta: float) -> np.ndarray:
    """Σ_i w_i·Huber_δ(r_i) per row (length B)."""
    return np.sum(ws * huber(batch_residuals(theta, pts, ys, form, residual), delta), axis=1)


def batch_jacobian(theta: np.ndarray, pts: Points, ys: np.ndarray, form: str, residual: str):
    """Residuals r (B × n) and their Jacobian ∂r/∂θ (B × n × P) for B parameter rows."""
    if form == RECTIFIED:
        lp, dlp = _rectified_batch(theta, pts.v)
        if residual == LOG:
            return lp - np.log(ys), dlp
        pred = np.exp(lp)
        return pred - ys, dlp * pred[:, :, None]
    lp, p1, p2, pe = _batch_parts(theta, pts, form)
    if residual == LOG:
        r, chain = lp - np.log(ys), None
    else:
        pred = np.exp(lp)
        r, chain = pred - ys, pred
    if chain is not None:  # ∂r/∂θ = ∂L̂/∂(log L̂) · ∂(log L̂)/∂θ
        p1, pe = p1 * chain, pe * chain
        p2 = None if p2 is None else p2 * chain
    B, n = lp.shape
    stride = _stride(form)
    jac = np.empty((B, n, theta.shape[1]))
    jac[:, :, 0] = -pts.v * (p2 if form == ADDITIVE else p1)
    jac[:, :, 1] = pe
    cols = [p1, -pts.u * p1] + ([p2] if form == ADDITIVE else [])
    for k in range(pts.n_factors):
        mine = 1.0 if pts.n_factors == 1 else (pts.k == k)
        for j, col in enumerate(cols):
            jac[:, :, 2 + stride * k + j] = col * mine
    return r, jac
