"""Critical finetuning data size: where two methods' fitted laws predict the same loss.

For methods M1, M2 at a fixed X, solve pred_M1(X, D) = pred_M2(X, D) for D. At fixed X every
form is one power term plus a constant, pred_i = c_i·D^−β_i + K_i (multiplicative:
c = A·X^−α, K = E; additive: c = B, K = A·X^−α + E; single: c = A, K = E), so in s = log D

    h(s) = c1·e^−β1·s − c2·e^−β2·s + (K1 − K2),   h'(s) = −β1·c1·e^−β1·s + β2·c2·e^−β2·s.

h' has at most one zero, s* = log(β1·c1 / (β2·c2)) / (β1 − β2), which exists when β1·β2 > 0
and β1 ≠ β2; h is monotone on each side of it. So the search range is split at s* and each
piece holds at most one crossing, found by Brent's method on the log-ratio of the predictions
(same sign as h, no overflow) wherever the piece's ends differ in sign: two crossings cannot be
missed however close they are, and nothing depends on a scan resolution. Identical laws are
reported as equal everywhere, not as one method being better.

Eq. 3 of the paper (multiplicative law, gap equal to E1 − E2): D_c = H·X^γ with
H = (A1/A2)^(1/(β1−β2)) and γ = (α2 − α1)/(β1 − β2); H is kept as log10 H since it routinely
exceeds float range when β1 ≈ β2.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ftscale.law.fit import LawParams, percentile_interval
from ftscale.law.model import ADDITIVE, SINGLE

# Searched data sizes, in examples: 1 to 1e30 — far beyond any real dataset, so a crossing
# outside it is "no crossing" for every practical purpose (and is said so).
SEARCH_RANGE = (1.0, 1e30)
# Two laws whose power terms and constants agree to this relative precision are the same law:
# they are "equal everywhere" (no method better at any data size).
EQUAL_RTOL = 1e-12


def power_form(law: LawParams, x: float) -> tuple[float, float, float]:
    """The law at X = x as (log c, β, log K): pred(D) = c·D^−β + K (see the module docstring).
    log K is −inf when K = 0."""
    lx = math.log(x)
    if law.form == ADDITIVE:
        return law.log_B, law.beta, float(np.logaddexp(law.log_A - law.alpha * lx, law.log_E))
    if law.form == SINGLE:
        return law.log_A, law.beta, law.log_E
    return law.log_A - law.alpha * lx, law.beta, law.log_E


def _close(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= EQUAL_RTOL * max(1.0, abs(a), abs(b))


def equal_everywhere(law1: LawParams, law2: LawParams, x: float) -> bool:
    """Whether the two laws predict the same loss at every data size at X = x."""
    c1, b1, k1 = power_form(law1, x)
    c2, b2, k2 = power_form(law2, x)
    return _close(c1, c2) and _close(b1, b2) and _close(k1, k2)


def turning_point(law1: LawParams, law2: LawParams, x: float) -> float | None:
    """s* = log D where pred1 − pred2 has its extremum, or None when it is monotone."""
    c1, b1, _ = power_form(law1, x)
    c2, b2, _ = power_form(law2, x)
    if b1 * b2 <= 0 or _close(b1, b2):
        return None
    return (math.log(b1 / b2) + c1 - c2) / (b1 - b2)


def crossings(law1: LawParams, law2: LawParams, x: float,
              search=SEARCH_RANGE) -> list[float]:
    """Data sizes D in `search` where the two laws predict the same loss at X = x (sorted).
    Empty for laws equal everywhere (see equal_everywhere)."""
    if equal_everywhere(law1, law2, x):
        return []

    def g(sv: float) -> float:  # same sign as pred1 − pred2, computed without overflow
        d = math.exp(sv)
        return float(law1.log_predict(x, d) - law2.log_predict(x, d))

    lo, hi = math.log(search[0]), math.log(search[1])
    cuts = [lo, hi]
    s_star = turning_point(law1, law2, x)
    if s_star is not None and lo < s_star < hi:
        cuts.insert(1, s_star)
    values = [g(c) for c in cuts]
    roots = []
    for (a, b), (ga, gb) in zip(zip(cuts, cuts[1:]), zip(values, values[1:])):
        if ga == 0.0:
            roots.append(a)  # a touch at an end (or the turning point) counts once
        elif ga * gb < 0:
            roots.append(brentq(g, a, b, xtol=1e-12, rtol=1e-12))
    if values[-1] == 0.0:
        roots.append(cuts[-1])
    return sorted({float(math.exp(r)) for r in roots})


def observed_overlap(d1, d2) -> tuple[float, float]:
    """The data sizes both methods were run at: the intersection of their [min, max] ranges.
    Empty (lo > hi) when they do not overlap, so every crossing counts as extrapolated."""
    return (max(min(d1), min(d2)), min(max(d1), max(d2)))


def better_below_above(law1: LawParams, law2: LawParams, x: float, root: float,
                       names: tuple[str, str], previous: float | None = None,
                       following: float | None = None) -> tuple[str, str]:
    """Which method has the lower predicted loss just below and just above a crossing. The
    probes stay 1 % from the root, or halfway (geometrically) to a neighbouring crossing when
    that is closer, so a close pair of crossings is not stepped over."""
    lo, hi = root / 1.01, root * 1.01
    if previous is not None:
        lo = max(lo, math.sqrt(previous * root))
    if following is not None:
        hi = min(hi, math.sqrt(root * following))
    below = names[0] if law1.predict(x, lo) < law2.predict(x, lo) else names[1]
    above = names[0] if law1.predict(x, hi) < law2.predict(x, hi) else names[1]
    return below, above


def eq3(law1: LawParams, law2: LawParams) -> dict | None:
    """H (as log10 H and, when finite, H) and γ of Eq. 3; None when β1 = β2."""
    dbeta = law1.beta - law2.beta
    if abs(dbeta) < 1e-15:
        return None
    log10_h = (law1.log_A - law2.log_A) / dbeta / math.log(10)
    gamma = (law2.alpha - law1.alpha) / dbeta
    h = 10 ** log10_h if abs(log10_h) < 300 else None
    return {"H": h, "log10_H": log10_h, "gamma": gamma}


def critical_entry(law1: LawParams, law2: LawParams, x: float, names: tuple[str, str],
                   samples1=(), samples2=(), level: float = 0.95,
                   d_range: tuple[float, float] | None = None) -> dict:
    """One (method pair, X) critical-size record with bootstrap intervals.

    Intervals per crossing come from the replicates that show the same number of crossings
    (matched in order); `bootstrap_crossing_fraction` says how often a replicate crossed at all.
    d_range: the data sizes both methods were run at (observed_overlap, the intersection of
    their ranges), to flag extrapolated crossings. Identical laws give `equal_everywhere: true`
    and no "better" method.
    """
    roots = crossings(law1, law2, x)
    entry = {"x": x, "methods": list(names), "crossings": [], "no_crossing": not roots,
             "search_range": list(SEARCH_RANGE)}
    if equal_everywhere(law1, law2, x):
        entry["equal_everywhere"] = True
        entry["better_everywhere"] = None
        entry["note"] = "the two laws are equal at every data size: neither method is better"
    elif not roots:
        d_mid = 1e4
        better = names[0] if law1.predict(x, d_mid) < law2.predict(x, d_mid) else names[1]
        entry["note"] = (f"no crossing for D in [{SEARCH_RANGE[0]:g}, {SEARCH_RANGE[1]:g}]: "
                         f"{better} is predicted better at every data size")
        entry["better_everywhere"] = better
    pairs = [(a, b) for a, b in zip(samples1, samples2) if a is not None and b is not None]
    rep_roots = [crossings(a, b, x) for a, b in pairs]
    for i, root in enumerate(roots):
        below, above = better_below_above(law1, law2, x, root, names,
                                          roots[i - 1] if i else None,
                                          roots[i + 1] if i + 1 < len(roots) else None)
        item = {"data_size": root, "log10_data_size": math.log10(root),
                "better_below": below, "better_above": above}
        if d_range is not None:
            # outside the data sizes both methods were run at, the crossing is an extrapolation
            item["within_observed_range"] = bool(d_range[0] <= root <= d_range[1])
        same = [r[i] for r in rep_roots if len(r) == len(roots)]
        iv = percentile_interval(np.log10(same), level) if len(same) >= 2 else None
        if iv:
            item["interval"] = [10 ** iv[0], 10 ** iv[1]]
            item["interval_replicates"] = len(same)
        entry["crossings"].append(item)
    if pairs:
        entry["bootstrap_crossing_fraction"] = float(np.mean([bool(r) for r in rep_roots]))
    return entry


def eq3_entry(law1: LawParams, law2: LawParams, names: tuple[str, str], samples1=(),
              samples2=(), level: float = 0.95) -> dict | None:
    point = eq3(law1, law2)
    if point is None:
        return None
    out = {"methods": list(names), **point}
    reps = [eq3(a, b) for a, b in zip(samples1, samples2) if a is not None and b is not None]
    reps = [r for r in reps if r is not None]
    if len(reps) >= 2:
        iv = percentile_interval([r["log10_H"] for r in reps], level)
        if iv:
            out["intervals"] = {"log10_H": list(iv)}
            ivg = percentile_interval([r["gamma"] for r in reps], level)
            if ivg:
                out["intervals"]["gamma"] = list(ivg)
    return out
