"""Identifiability refusals and degenerate-fit flags (ftscale.law.diagnostics), on constructed
degenerate tables: E at 0, α at its bound, one X value, D ∝ X, X given as D, constant loss,
A–α collinear (X spanning 2 %), a held-out jump — and a planted healthy law with no flag."""

import json
import math

import numpy as np
import pytest

from ftscale.cli import main
from ftscale.law import fit_law
from ftscale.law.diagnostics import (AT_BOUND, CODES, CORRELATED_PARAMETERS,
                                     HELD_OUT_MUCH_WORSE, ILL_CONDITIONED, NOT_CONVERGED,
                                     NOT_IDENTIFIABLE, REPLICATES_DROPPED, WIDE_INTERVAL,
                                     ZERO_WIDTH_INTERVAL, Flag, bound_flags, design_flags,
                                     design_problem, heldout_flag, interval_flags)
from ftscale.law.errors import LawInputError, NotIdentifiable
from ftscale.law.fit import LawParams, check_enough, make_factor
from ftscale.law.options import AxisHoldout
from ftscale.law.synthetic import MODEL_SIZES, PlantedLaw, factor_rows

FMT = PlantedLaw(1.2e5, 0.52, 0.15, 0.75)  # the paper's FMT model-size law (Table 4)


def codes(law):
    return {(f.code, f.parameter) for f in law.flags}


def diagonal_rows(rng, d_of_x, seeds=3):
    """Runs whose data size is a function of X: no two runs share X with different D."""
    rows = []
    for x in MODEL_SIZES:
        d = d_of_x(x)
        for s in range(seeds):
            rows.append({"model_params": x, "data_size": d, "run_id": f"{x:g}-{s}",
                         "test_loss": float(FMT.predict(x, d)) + rng.normal(0, 0.005)})
    return rows


def test_planted_healthy_law_has_no_flags():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(11))
    (law,) = fit_law(rows, bootstrap=40, seed=0)
    assert law.convergence.converged and law.bootstrap.converged == 40
    assert law.flags == ()
    assert law.to_dict()["flags"] == []


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_e_at_zero_is_flagged(seed):
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(seed),
                       law=PlantedLaw(1.2e5, 0.52, 0.15, 1e-12))
    (law,) = fit_law(rows, bootstrap=10, seed=0)
    # A pure power law: noise decides whether E lands on 0 (log E drifting toward −∞, no
    # stationary point) or on a small value the bootstrap cannot pin — flagged either way.
    assert law.flags
    if law.params.E < 1e-6:
        assert {(AT_BOUND, "E"), (NOT_CONVERGED, None)} <= codes(law)
        assert "lower bound 0" in next(f.message for f in law.flags if f.code == AT_BOUND)
    if seed == 0:
        assert law.params.E < 1e-6


def test_alpha_at_its_bound():
    # α = 8 lies beyond the exponent bound 6: the fit stops on it
    law_8 = PlantedLaw(1e72 * 1e6 ** 0.15, 8.0, 0.15, 0.75)
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(2), law=law_8)
    (law,) = fit_law(rows, bootstrap=0)
    assert (AT_BOUND, "alpha") in codes(law)
    assert (NOT_CONVERGED, None) in codes(law)
    assert "alpha" in next(f.message for f in law.flags if f.code == NOT_CONVERGED)


def test_one_x_value_is_refused():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(3), xs=(1e9,))
    with pytest.raises(NotIdentifiable, match="2 distinct X.*add runs"):
        fit_law(rows)


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_d_proportional_to_x_is_refused(power):
    rows = diagonal_rows(np.random.default_rng(4), lambda x: 1e5 * (x / 1e9) ** power)
    with pytest.raises(NotIdentifiable) as exc:
        fit_law(rows, holdout="none")
    msg = str(exc.value)
    assert f"D ∝ X^{power:g}" in msg and "cannot tell α from β" in msg
    assert "add runs at 2 or more data sizes for the same X" in msg


def test_x_given_as_d_is_refused_with_a_hint():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(5))
    with pytest.raises(NotIdentifiable, match="--x does not name the data-size column"):
        fit_law(rows, x="data_size")


def test_collinear_design_is_fine_when_beta_is_fixed():
    # stage 2 fixes β: then only X must vary, and D ∝ X determines α
    rows = diagonal_rows(np.random.default_rng(6), lambda x: x / 1e4)
    factor = make_factor("model_size", "model_params", rows, "data_size", "test_loss",
                         AxisHoldout("none"), AxisHoldout("none"), {}, "t")
    check_enough(factor, "multiplicative", "t", stage2=True)
    with pytest.raises(NotIdentifiable):
        check_enough(factor, "multiplicative", "t", stage2=False)


def test_cli_refuses_a_diagonal_table_with_exit_2(tmp_path, capsys):
    rows = diagonal_rows(np.random.default_rng(7), lambda x: x / 1e4)
    path = tmp_path / "diag.csv"
    path.write_text("model_params,data_size,test_loss\n" + "".join(
        f"{r['model_params']},{r['data_size']},{r['test_loss']}\n" for r in rows))
    assert main(["fit", str(path), "--bootstrap", "0", "--holdout", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot tell α from β" in err


def test_constant_loss_is_flagged_not_identifiable():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(8))
    for r in rows:
        r["test_loss"] = 2.0
    (law,) = fit_law(rows, bootstrap=10, seed=0)
    assert (NOT_IDENTIFIABLE, None) in codes(law)
    # exact data: every replicate finds the same law, which is no symptom
    assert not any(f.code == ZERO_WIDTH_INTERVAL for f in law.flags)


def test_noisy_constant_loss_is_flagged_not_identifiable():
    rng = np.random.default_rng(9)
    rows = factor_rows("fmt", "model_size", rng=rng)
    for r in rows:
        r["test_loss"] = 2.0 + rng.normal(0, 0.005)
    (law,) = fit_law(rows, bootstrap=10, seed=0)
    assert (NOT_IDENTIFIABLE, None) in codes(law)
    assert "flat" in next(f.message for f in law.flags if f.code == NOT_IDENTIFIABLE)


def test_collinear_a_alpha_when_x_spans_two_percent():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(3),
                       xs=tuple(1e9 * np.geomspace(1, 1.02, 5)))
    (law,) = fit_law(rows, bootstrap=60, seed=0)
    assert law.convergence.converged
    assert (CORRELATED_PARAMETERS, "alpha") in codes(law)
    assert (WIDE_INTERVAL, "alpha") in codes(law)
    assert "ρ(log A, α) = 0.99" in next(f.message for f in law.flags
                                        if f.code == CORRELATED_PARAMETERS)


def test_heldout_much_worse():
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(10))
    top = max(r["data_size"] for r in rows)
    for r in rows:
        if r["data_size"] == top:
            r["test_loss"] += 0.05  # the held-out largest D jumps off the law
    (law,) = fit_law(rows, bootstrap=0)
    assert codes(law) == {(HELD_OUT_MUCH_WORSE, None)}


def test_flags_travel_in_to_dict_and_json(tmp_path, capsys):
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(8))
    for r in rows:
        r["test_loss"] = 2.0
    path = tmp_path / "flat.json"
    path.write_text(json.dumps(rows))
    main(["fit", str(path), "--bootstrap", "0", "--json"])
    doc = json.loads(capsys.readouterr().out)
    (flag,) = [f for f in doc["fits"][0]["flags"] if f["code"] == NOT_IDENTIFIABLE]
    assert set(flag) == {"code", "parameter", "message"} and flag["parameter"] is None


# ---- the rules one by one ------------------------------------------------------------------

def test_design_problem_accepts_a_crossed_grid_and_names_each_defect():
    lx, ld = np.meshgrid(np.log([1e9, 2e9, 4e9]), np.log([1e4, 1e5, 1e6]))
    assert design_problem(lx.ravel(), ld.ravel()) is None
    assert "same X" in design_problem(np.full(4, 21.0), np.log([1, 2, 3, 4.0]))
    assert "same data size" in design_problem(np.log([1, 2, 3, 4.0]), np.full(4, 9.0))
    assert design_problem(None, np.log([1, 2, 3, 4.0])) is None
    # D ∝ X to within rounding of 1e-5 is still collinear
    lx = np.log([1e9, 2e9, 4e9, 8e9])
    assert "D ∝ X^1" in design_problem(lx, lx - np.log(1e4) + np.array([0, 1e-5, -1e-5, 0]))


def test_ill_conditioned_design_is_flagged_not_refused():
    # a diagonal with one off-diagonal run: identifiable, but α and β trade off
    lx = np.log([1e9, 2e9, 4e9, 8e9, 1e9])
    ld = np.log([1e4, 2e4, 4e4, 8e4, 1.3e4])
    assert design_problem(lx, ld) is None
    (flag,) = design_flags(lx, ld)
    assert flag.code == ILL_CONDITIONED and "variance inflation" in flag.message
    grid_x, grid_d = np.meshgrid(lx[:4], ld[:4])
    assert design_flags(grid_x.ravel(), grid_d.ravel()) == []


def _mult(log_a, alpha, beta, log_e):
    return LawParams("multiplicative", log_a, alpha, beta, log_e)


def test_zero_width_interval_only_when_the_data_are_not_exact():
    rng = np.random.default_rng(0)
    samples = [_mult(10.0 + 22 * a, 0.5 + a, 0.1, math.log(1e-9))
               for a in rng.normal(0, 0.01, 50)]
    intervals = {"E": (1e-9, 1e-9), "alpha": (0.48, 0.52), "A": (1.0, 2.0)}
    lx, ld = np.log([1e9, 2e9, 4e9]), np.log([1e4, 1e5, 1e6])
    found = interval_flags(intervals, samples, 0.95, lx, ld, exact=False)
    assert [(f.code, f.parameter) for f in found] == [(ZERO_WIDTH_INTERVAL, "E")]
    assert interval_flags(intervals, samples, 0.95, lx, ld, exact=True) == []


def test_wide_intervals_judge_a_at_the_data_not_at_x_equal_1():
    lx, ld = np.log([1e9, 2e9, 4e9]), np.log([1e4, 1e5, 1e6])
    xc, dc = lx.mean(), ld.mean()
    rng = np.random.default_rng(1)
    # A at X = 1 swings over decades with α, but the term at the data's centre stays put
    alphas = 0.5 + rng.normal(0, 0.03, 100)
    centre = 1.0 + rng.normal(0, 0.02, 100)  # the term at the data's centre: well determined
    samples = [_mult(c + a * xc + 0.1 * dc, a, 0.1, -0.3) for c, a in zip(centre, alphas)]
    la = [s.log_A for s in samples]
    intervals = {"A": (math.exp(min(la)), math.exp(max(la))), "alpha": (0.44, 0.56),
                 "E": (0.70, 0.76), "beta": (0.09, 0.11)}
    assert intervals["A"][1] / intervals["A"][0] > 10
    assert interval_flags(intervals, samples, 0.95, lx, ld, exact=False) == []
    intervals["E"] = (0.01, 0.7)
    intervals["beta"] = (-0.6, 0.7)
    found = interval_flags(intervals, samples, 0.95, lx, ld, exact=False)
    assert {(f.code, f.parameter) for f in found} == {(WIDE_INTERVAL, "E"),
                                                      (WIDE_INTERVAL, "beta")}


def test_bound_rules():
    lx, ld = np.log([1e9, 2e9, 4e9]), np.log([1e4, 1e5, 1e6])
    y = np.array([1.2, 1.0, 0.8])
    healthy = _mult(math.log(1.2e5), 0.52, 0.15, math.log(0.75))
    assert bound_flags(healthy, lx, ld, y) == []
    log_a = 5.97 * lx.mean() - 1.98 * ld.mean()  # the power term ≈ 1 nat at the data
    near = {(f.code, f.parameter)
            for f in bound_flags(_mult(log_a, 5.97, -1.98, math.log(0.75)), lx, ld, y)}
    assert near == {(AT_BOUND, "alpha"), (AT_BOUND, "beta")}
    # E at 0.05 % of the smallest loss: at its lower bound; A's term likewise
    tiny_e = _mult(math.log(1.2e5), 0.52, 0.15, math.log(0.0005 * 0.8))
    assert [f.parameter for f in bound_flags(tiny_e, lx, ld, y)] == ["E"]
    tiny_a = _mult(math.log(1e-9), 0.52, 0.15, math.log(0.75))
    assert [f.parameter for f in bound_flags(tiny_a, lx, ld, y)] == ["A"]


def test_heldout_rule_needs_ratio_and_floor():
    assert heldout_flag(0.002, 0.004) == []  # 2×: an ordinary extrapolation
    assert heldout_flag(1e-6, 1e-4) == []  # 100×, but far below a thousandth of a nat
    assert heldout_flag(0.002, None) == []
    assert heldout_flag(0.002, 0.01)[0].code == HELD_OUT_MUCH_WORSE


def test_flag_shape_and_codes_are_stable():
    f = Flag(AT_BOUND, "E", "m")
    assert f.to_dict() == {"code": "AtBound", "parameter": "E", "message": "m"}
    assert f.label() == "AtBound(E)" and Flag(NOT_CONVERGED, None, "m").label() == "NotConverged"
    assert CODES == ("NotConverged", "NotIdentifiable", "IllConditioned", "AtBound",
                     "ZeroWidthInterval", "WideInterval", "CorrelatedParameters",
                     "ReplicatesDropped", "HeldOutMuchWorse")
    assert issubclass(NotIdentifiable, LawInputError)
    assert REPLICATES_DROPPED in CODES


def test_report_and_plots_mark_flagged_fits(tmp_path):
    from ftscale.law import FactorRows, LawOptions, fit_study, render_markdown
    from ftscale.law.plots import line_style, plot_law

    rng = np.random.default_rng(12)
    healthy = factor_rows("fmt", "model_size", rng=rng)
    flat = factor_rows("lora", "model_size", rng=rng)
    for r in flat:
        r["test_loss"] = 2.0
    sf = fit_study({"fmt": [FactorRows("model_size", "model_params", healthy)],
                    "lora": [FactorRows("model_size", "model_params", flat)]},
                   LawOptions.from_spec({"forms": ["multiplicative"], "bootstrap": 0}))
    good, bad = sf.law("fmt", "model_size"), sf.law("lora", "model_size")
    assert good.flags == () and (NOT_IDENTIFIABLE, None) in codes(bad)
    md = render_markdown(sf)
    assert "### Diagnostics" in md and "`NotIdentifiable`" in md
    findings = md.split("## Findings")[1].splitlines()
    pair = [line for line in findings if line.startswith("- fmt vs lora")]
    assert pair and all("Caution: drawn from flagged fit(s) lora/model_size/multiplicative"
                        in line for line in pair)
    assert any(line.startswith("- 1 fit(s) are flagged") for line in findings)
    assert line_style(bad) == "--" and line_style(good) == "-"
    assert plot_law(bad, tmp_path / "bad.png").stat().st_size > 0
