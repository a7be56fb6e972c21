"""Critical data size and Eq. 3 (ftscale.law.critical)."""

import math

import numpy as np
import pytest

from ftscale.law import LawParams, crossings, eq3
from ftscale.law.critical import critical_entry, observed_overlap, turning_point


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


def _two_crossing_pair(s_a, s_b, beta1=0.3, beta2=0.1, gap=0.2):
    """Laws c1·D^−β1 + E1 and c2·D^−β2 + E2 that cross exactly at D = e^s_a and e^s_b:
    h(s) = c1·e^−β1·s − c2·e^−β2·s + (E1 − E2) = 0 at both, linear in (c1, c2)."""
    m = np.array([[math.exp(-beta1 * s_a), -math.exp(-beta2 * s_a)],
                  [math.exp(-beta1 * s_b), -math.exp(-beta2 * s_b)]])
    c1, c2 = np.linalg.solve(m, [-gap, -gap])
    assert c1 > 0 and c2 > 0
    return mult(c1, 0.0, beta1, 0.5 + gap), mult(c2, 0.0, beta2, 0.5)


@pytest.mark.parametrize("d_a, d_b", [(1000.0, 1001.0), (1e4, 1.0001e4), (10.0, 1e12)])
def test_two_close_crossings_are_both_found(d_a, d_b):
    # a fixed scan of 600 points over 30 decades (≈ 12 % apart) missed both of a close pair
    law1, law2 = _two_crossing_pair(math.log(d_a), math.log(d_b))
    roots = crossings(law1, law2, 1e9)
    assert roots == pytest.approx([d_a, d_b], rel=1e-9)
    entry = critical_entry(law1, law2, 1e9, ("a", "b"))
    assert [c["better_below"] for c in entry["crossings"]] == ["b", "a"]
    assert [c["better_above"] for c in entry["crossings"]] == ["a", "b"]


def test_turning_point_has_the_closed_form():
    law1, law2 = _two_crossing_pair(math.log(100.0), math.log(1e6))
    s_star = turning_point(law1, law2, 1e9)
    h = lambda s: law1.predict(1e9, math.exp(s)) - law2.predict(1e9, math.exp(s))
    eps = 1e-4
    # the extremum of the difference: the slope changes sign there
    assert (h(s_star + eps) - h(s_star)) * (h(s_star) - h(s_star - eps)) < 0
    assert math.log(100.0) < s_star < math.log(1e6)


def test_identical_laws_are_equal_everywhere():
    law = mult(10, 0.3, 0.1, 0.5)
    entry = critical_entry(law, law, 1e9, ("a", "b"))
    assert entry["equal_everywhere"] is True and entry["better_everywhere"] is None
    assert entry["crossings"] == [] and "equal at every data size" in entry["note"]
    assert "equal_everywhere" not in critical_entry(law, mult(10, 0.3, 0.1, 0.6), 1e9,
                                                    ("a", "b"))


def test_additive_and_single_laws_cross_like_the_closed_form():
    add1 = LawParams("additive", math.log(50), 0.2, 0.3, math.log(0.5), math.log(40))
    add2 = LawParams("additive", math.log(50), 0.2, 0.1, math.log(0.6), math.log(3))
    roots = crossings(add1, add2, 1e9)
    assert roots
    for r in roots:
        assert add1.predict(1e9, r) == pytest.approx(add2.predict(1e9, r), rel=1e-9)


def test_observed_range_is_the_intersection():
    assert observed_overlap([1e3, 1e5], [1e4, 1e6]) == (1e4, 1e5)
    lo, hi = observed_overlap([1e3, 2e3], [1e5, 1e6])
    assert lo > hi  # disjoint: every crossing is extrapolated
    fmt, prompt = mult(1.2e5, 0.52, 0.15, 0.75), mult(3.9e3, 0.40, 0.051, 0.75)
    # root ≈ 1.3e4 lies in the union of [1e3, 2e4] and [1e4, 1e6] and in their intersection,
    # but not in the intersection of [1e3, 1.2e4] and [1.5e4, 1e6]
    entry = critical_entry(fmt, prompt, 1e9, ("f", "p"),
                           d_range=observed_overlap([1e3, 1.2e4], [1.5e4, 1e6]))
    assert entry["crossings"][0]["within_observed_range"] is False
