"""The rectified law of Lin et al. (ICML 2024): gradients, recovery of planted curves with a
pre-power and a power phase, the comparison with the plain power law, bootstrap replicates in
fit.json, and ranking candidate models from subset runs (ftscale.law.rectified)."""

import json
import math

import numpy as np
import pytest

from ftscale.law import fit_law
from ftscale.law.errors import LawInputError
from ftscale.law.fit import LawParams
from ftscale.law.model import (RECTIFIED, Points, batch_jacobian, batch_residuals,
                               objective_and_gradient)
from ftscale.law.rectified import fit_compared, rank_models, split_by_model

SUBSETS = 200 * 2.0 ** np.arange(14)  # Lin et al.'s subsets: 200 … 1.6M examples
FULL = SUBSETS[-1]


def planted(alpha, beta, knee, l_small=3.0, l_full=1.0):
    """A rectified curve with loss l_small at D = 200 and l_full at the full 1.6M, its knee
    (end of the pre-power phase) at D_l^(1/β) = knee. Returns (B, E, D_l, loss function)."""
    d_l = knee ** beta
    g = lambda d: 1.0 / (d_l + d ** beta)  # noqa: E731
    i0, i1 = l_small ** (1 / alpha), l_full ** (1 / alpha)
    b = (i0 - i1) / (g(200.0) - g(FULL))
    e = i1 - b * g(FULL)
    return b, e, d_l, lambda d: (b * g(np.asarray(d, float)) + e) ** alpha


def rows_of(loss, ds=SUBSETS, sigma=0.0, seed=0, model="m"):
    rng = np.random.default_rng(seed)
    return [{"model": model, "method": "fmt", "run_id": f"{model}-{int(d)}",
             "data_size": float(d), "test_loss": float(loss(d) + rng.normal(0.0, sigma))}
            for d in ds]


def test_gradient_and_jacobian_match_finite_differences():
    rng = np.random.default_rng(0)
    v = np.linspace(-3, 3, 12)
    y = np.exp(rng.normal(0.5, 0.3, 12))
    pts = Points(np.zeros(12), v, np.zeros(12, int), y, rng.uniform(0.5, 1.5, 12), 1)
    theta = np.array([0.7, 0.1, 0.5, -0.3, 1.2])
    h = 1e-6
    for residual in ("raw", "log"):
        _, grad = objective_and_gradient(theta, pts, RECTIFIED, residual, 10.0)
        num = [(objective_and_gradient(theta + s, pts, RECTIFIED, residual, 10.0)[0]
                - objective_and_gradient(theta - s, pts, RECTIFIED, residual, 10.0)[0]) / (2 * h)
               for s in np.eye(5) * h]
        assert np.allclose(grad, num, rtol=1e-6, atol=1e-8)
        _, jac = batch_jacobian(theta[None], pts, y[None], RECTIFIED, residual)
        jnum = np.stack([(batch_residuals((theta + s)[None], pts, y[None], RECTIFIED, residual)
                          - batch_residuals((theta - s)[None], pts, y[None], RECTIFIED,
                                            residual))[0] / (2 * h)
                         for s in np.eye(5) * h], axis=1)
        assert np.allclose(jac[0], jnum, atol=1e-8)


def test_noise_free_curve_recovers_every_parameter():
    b, e, d_l, loss = planted(alpha=1.0, beta=0.8, knee=1e4)
    law = fit_law(rows_of(loss), form=RECTIFIED, x=None, holdout="none")[0]
    p = law.params
    assert law.convergence.converged
    assert p.alpha == pytest.approx(1.0, rel=1e-3)
    assert p.beta == pytest.approx(0.8, rel=1e-3)
    assert p.D_l == pytest.approx(d_l, rel=1e-2)
    assert p.B == pytest.approx(b, rel=1e-2)
    assert p.E == pytest.approx(e, rel=1e-3)
    assert law.delta_fit < 1e-5
    assert law.factor is None and law.label == "all"


@pytest.mark.parametrize("alpha,beta,knee", [(1.0, 0.8, 1e4), (0.7, 1.0, 2e4)])
def test_noisy_two_phase_curve_recovers_its_shape_and_beats_the_power_law(alpha, beta, knee):
    """σ = 0.005 nats per run, both phases in the data, the largest subset held out: the knee,
    β, the floor and the held-out loss come back; the plain power law (which cannot bend from
    flat to steep) extrapolates several times worse."""
    _, e, d_l, loss = planted(alpha, beta, knee)
    rect, power, cmp_ = fit_compared(rows_of(loss, sigma=0.005, seed=1))
    p = rect.params
    assert rect.convergence.converged
    assert p.beta == pytest.approx(beta, abs=0.1)
    assert math.exp(p.log_D_l / p.beta) == pytest.approx(knee, rel=0.35)  # the knee
    assert p.E ** p.alpha == pytest.approx(e ** alpha, abs=0.08)  # the loss floor
    assert float(p.predict(1.0, FULL)) == pytest.approx(float(loss(FULL)), abs=0.015)
    assert rect.delta_heldout < 0.015
    assert power.delta_heldout > 3 * rect.delta_heldout
    assert cmp_["better"] == RECTIFIED
    assert cmp_["rectified"]["delta_heldout"] == rect.delta_heldout


def test_a_curve_without_pre_power_phase_flags_D_l():
    """A plain power law (no flat start): D_l has nothing to describe and sits at its lower
    bound, which the diagnostics say; the power law extrapolates at least as well."""
    loss = lambda d: 9.0 * np.asarray(d, float) ** -0.3 + 0.8  # noqa: E731
    rect, power, cmp_ = fit_compared(rows_of(loss, sigma=0.002, seed=2))
    codes = {(f.code, f.parameter) for f in rect.flags}
    assert ("AtBound", "D_l") in codes
    assert power.delta_heldout <= rect.delta_heldout + 0.004


def test_too_few_data_sizes_is_refused():
    _, _, _, loss = planted(1.0, 0.8, 1e4)
    with pytest.raises(LawInputError, match="6 distinct data sizes"):
        fit_law(rows_of(loss, ds=SUBSETS[:6]), form=RECTIFIED, x=None)  # 5 after the split


def test_replicates_are_kept_and_read_back():
    _, _, _, loss = planted(1.0, 0.8, 1e4)
    law = fit_law(rows_of(loss, sigma=0.005), form=RECTIFIED, x=None, bootstrap=6)[0]
    doc = json.loads(json.dumps(law.to_dict()))
    assert doc["replicate_columns"] == ["log_B", "log_E", "alpha", "beta", "log_D_l"]
    assert len(doc["replicates"]) == 6
    for row, sample in zip(doc["replicates"], law.samples):
        if sample is None:
            assert row is None
            continue
        back = LawParams.from_replicate_row(RECTIFIED, doc["replicate_columns"], row)
        assert float(back.predict(1.0, 5e5)) == pytest.approx(float(sample.predict(1.0, 5e5)),
                                                               rel=1e-7)
    assert "replicates" not in law.to_dict(with_replicates=False)


def test_joint_law_replicates_round_trip():
    from ftscale.law.synthetic import factor_rows

    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(0), seeds=1)
    law = fit_law(rows, bootstrap=5)[0]
    doc = law.to_dict()
    assert doc["replicate_columns"] == ["log_A", "log_E", "alpha", "beta"]
    good = [(r, s) for r, s in zip(doc["replicates"], law.samples) if s is not None]
    assert good
    for row, sample in good:
        back = LawParams.from_replicate_row("multiplicative", doc["replicate_columns"], row)
        assert float(back.predict(7e9, 5e4)) == pytest.approx(float(sample.predict(7e9, 5e4)),
                                                                rel=1e-7)


# ---- model selection --------------------------------------------------------------------------

def pool_rows(specs, sigma=0.005, upto=0.1):
    """Each candidate on the subsets up to `upto` of the full data size."""
    rows = []
    for i, (name, args) in enumerate(specs.items()):
        loss = planted(*args)[3]
        rows += rows_of(loss, ds=SUBSETS[SUBSETS <= upto * FULL], sigma=sigma, seed=10 + i,
                        model=name)
    return rows


POOL = {  # (alpha, beta, knee, loss at 200, loss at 1.6M): the late bloomer wins at full data
    "late-bloomer": (1.0, 0.9, 2e4, 3.4, 0.85),
    "steady": (1.0, 0.6, 1e3, 2.4, 1.15),
    "early-flat": (0.8, 0.8, 5e3, 2.8, 1.35),
}


def test_rank_models_picks_the_best_from_subsets_where_the_shortcuts_fail():
    doc = rank_models(pool_rows(POOL), FULL)
    assert [c["model"] for c in doc["ranking"]][0] == "late-bloomer"
    assert doc["by_largest_subset"][0] != "late-bloomer"  # it is still behind at 10 %
    assert all(c["basis"] == RECTIFIED for c in doc["ranking"])
    assert doc["largest_fraction"] <= 0.1
    assert doc["winner_share"] is None  # no bootstrap asked
    best = doc["ranking"][0]
    assert best["predicted_loss"] == pytest.approx(0.85, abs=0.05)


def test_rank_models_with_bootstrap_reports_how_sure():
    doc = rank_models(pool_rows(POOL), FULL, bootstrap=8)
    assert doc["winner_share"] is not None and 0.0 <= doc["winner_share"] <= 1.0
    assert all(c["interval"] is None or c["interval"][0] <= c["interval"][1]
               for c in doc["ranking"])


def test_rank_models_falls_back_to_the_power_law_with_few_subsets():
    rows = pool_rows(POOL, upto=0.004)  # 200 … 6,400: 6 sizes for rectified, so cut further
    rows = [r for r in rows if r["data_size"] <= 3200]  # 5 sizes: power law only
    doc = rank_models(rows, FULL)
    assert {c["basis"] for c in doc["ranking"]} == {"power"}
    assert any("too few for the rectified law" in n for n in doc["notes"])


def test_split_by_model_refuses_mixed_curves():
    rows = pool_rows(POOL)
    rows[0] = {**rows[0], "method": "lora"}
    with pytest.raises(LawInputError, match="--method"):
        split_by_model(rows)
    assert set(split_by_model(rows, method="fmt")) == set(POOL)
    with pytest.raises(LawInputError, match="two or more"):
        split_by_model([r for r in rows if r["model"] == "steady"])
