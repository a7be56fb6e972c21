"""Critical data size and Eq. 3 (ftscale.law.critical)."""

import math

import numpy as np
import pytest

from ftscale.law import LawParams, crossings, eq3
from ftscale.law.critical import critical_entry


def mult(A, alpha, beta, E):
    return LawParams("multiplicative", math.log(A), alpha, beta, math.log(E))


def test_matches_closed_form_when_e_equal():
    # Eq. 3: with E1 = E2 the crossing is exactly D = H·X^γ
    fmt, prompt = mult(1.2e5, 0.52, 0.15, 0.75), mult(3.9e3, 0.40, 0.051, 0.75)
    H = (1.2e5 / 3.9e3) ** (1 / (0.15 - 0.051))
    gamma = (0.40 - 0.52) / (0.15 - 0.051)
    for x in (1e9, 4e9, 16e9):
        roots = crossings(fmt, prompt, x)
        assert len(roots) == 1
        assert roots[0] == pytest.approx(H * x ** gamma, rel=1e-9)
    coef = eq3(fmt, prompt)
    assert coef["gamma"] == pytest.approx(-1.2121212, rel=1e-6)  # paper: −1.2
    assert coef["log10_H"] == pytest.approx(math.log10(H), rel=1e-12)


def test_no_crossing_is_explicit():
    better, worse = mult(10, 0.3, 0.1, 0.5), mult(20, 0.3, 0.1, 0.6)
    entry = critical_entry(better, worse, 1e9, ("a", "b"))
    assert entry["no_crossing"] is True and entry["crossings"] == []
    assert entry["better_everywhere"] == "a"
    assert "no crossing" in entry["note"]


def test_identical_laws_do_not_cross():
    law = mult(10, 0.3, 0.1, 0.5)
    assert crossings(law, law, 1e9) == []


def test_sides_and_bootstrap_interval():
    fmt, prompt = mult(1.2e5, 0.52, 0.15, 0.75), mult(3.9e3, 0.40, 0.051, 0.75)
    rng = np.random.default_rng(0)
    s1 = [mult(1.2e5, 0.52, 0.15 + rng.normal(0, 0.002), 0.75) for _ in range(50)]
    s2 = [mult(3.9e3, 0.40, 0.051, 0.75) for _ in range(50)]
    entry = critical_entry(fmt, prompt, 1e9, ("fmt", "prompt"), s1, s2)
    (c,) = entry["crossings"]
    assert (c["better_below"], c["better_above"]) == ("prompt", "fmt")
    lo, hi = c["interval"]
    assert lo < c["data_size"] < hi
    assert entry["bootstrap_crossing_fraction"] == 1.0


def test_extrapolated_crossings_are_flagged():
    fmt, prompt = mult(1.2e5, 0.52, 0.15, 0.75), mult(3.9e3, 0.40, 0.051, 0.75)
    inside = critical_entry(fmt, prompt, 1e9, ("f", "p"), d_range=(1e4, 1e6))
    outside = critical_entry(fmt, prompt, 1e9, ("f", "p"), d_range=(1e5, 4.5e6))
    assert inside["crossings"][0]["within_observed_range"] is True  # root ≈ 1.3e4
    assert outside["crossings"][0]["within_observed_range"] is False
