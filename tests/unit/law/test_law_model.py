"""Objective and gradients of the law forms (ftscale.law.model)."""

import numpy as np
import pytest

from ftscale.law.model import Points, huber, log_predict, objective_and_gradient


def _points(n=30, k=1, seed=0):
    rng = np.random.default_rng(seed)
    return Points(rng.normal(0, 1, n), rng.normal(0, 1.5, n), rng.integers(0, k, n),
                  rng.uniform(0.7, 1.5, n), rng.uniform(0.5, 2, n), k)


@pytest.mark.parametrize("form", ["multiplicative", "additive"])
@pytest.mark.parametrize("residual", ["raw", "log"])
@pytest.mark.parametrize("k", [1, 2])
def test_gradient_matches_finite_differences(form, residual, k):
    pts = _points(k=k)
    stride = 3 if form == "additive" else 2
    rng = np.random.default_rng(1)
    theta = np.concatenate([[0.2, -0.4], rng.normal(-0.5, 0.3, stride * k)])
    # δ large enough that some residuals sit in each Huber branch
    delta = 0.05
    _, grad = objective_and_gradient(theta, pts, form, residual, delta)
    eps = 1e-6
    for i in range(theta.size):
        up, dn = theta.copy(), theta.copy()
        up[i] += eps
        dn[i] -= eps
        fd = (objective_and_gradient(up, pts, form, residual, delta)[0]
              - objective_and_gradient(dn, pts, form, residual, delta)[0]) / (2 * eps)
        assert grad[i] == pytest.approx(fd, rel=1e-5, abs=1e-9)


def test_huber_branches():
    r = np.array([-2e-3, -5e-4, 0.0, 5e-4, 2e-3])
    h = huber(r, 1e-3)
    assert h[2] == 0.0
    assert h[1] == pytest.approx(0.5 * 5e-4 ** 2)
    assert h[4] == pytest.approx(1e-3 * (2e-3 - 0.5e-3))


def test_log_sum_exp_never_overflows():
    pts = Points(np.array([800.0, -800.0]), np.array([-900.0, 900.0]), np.zeros(2, int),
                 np.ones(2), np.ones(2), 1)
    lp = log_predict(np.array([1.0, 0.0, 5.0, 2.0]), pts, "multiplicative")
    assert np.all(np.isfinite(lp))
