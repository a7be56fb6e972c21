"""Critical finetuning data size: where two methods' fitted laws predict the same loss.

For methods M1, M2 at a fixed X, solve pred_M1(X, D) = pred_M2(X, D) for D. In s = log D the
difference g(s) = pred1 − pred2 is smooth; we scan it on a dense grid over SEARCH_RANGE and
refine every sign change with Brent's method (bracketing, so it cannot wander off). Two power
laws plus constants can cross 0, 1 or 2 times; "no crossing" is reported explicitly.

Eq. 3 of the paper (multiplicative law, gap equal to E1 − E2): D_c = H·X^γ with
H = (A1/A2)^(1/(β1−β2)) and γ = (α2 − α1)/(β1 − β2); H is kept as log10 H since it routinely
exceeds float range when β1 ≈ β2.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ftscale.law.fit import LawParams, percentile_interval

# Searched data sizes, in examples: 1 to 1e30 — far beyond any real dataset, so a crossing
# outside it is "no crossing" for every practical purpose (and is said so).
SEARCH_RANGE = (1.0, 1e30)
SCAN_POINTS = 600
# Differences below this (nats) are "equal": two identical laws do not cross anywhere.
EQUAL_TOL = 1e-12


def crossings(law1: LawParams, law2: LawParams, x: float,
              search=SEARCH_RANGE) -> list[float]:
    """Data sizes D in `search` where the two laws predict the same loss at X = x (sorted)."""
    s = np.linspace(math.log(search[0]), math.log(search[1]), SCAN_POINTS)

    def g(sv):
        d = np.exp(sv)
        return law1.log_predict(x, d) - law2.log_predict(x, d)  # same sign as pred1 − pred2

    values = g(s)
    roots = []
    for i in range(len(s) - 1):
        a, b = values[i], values[i + 1]
        if abs(a) < EQUAL_TOL and abs(b) < EQUAL_TOL:
            continue
        if a == 0.0:
            roots.append(float(np.exp(s[i])))
        elif a * b < 0:
            roots.append(float(np.exp(brentq(lambda t: float(g(t)), s[i], s[i + 1],
                                             xtol=1e-12, rtol=1e-12))))
    return roots


def better_below_above(law1: LawParams, law2: LawParams, x: float, root: float,
                       names: tuple[str, str]) -> tuple[str, str]:
    """Which method has the lower predicted loss just below and just above a crossing."""
    lo, hi = root / 1.01, root * 1.01
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
    d_range: the span of data sizes observed for both methods, to flag extrapolated crossings.
    """
    roots = crossings(law1, law2, x)
    entry = {"x": x, "methods": list(names), "crossings": [], "no_crossing": not roots,
             "search_range": list(SEARCH_RANGE)}
    if not roots:
        d_mid = 1e4
        better = names[0] if law1.predict(x, d_mid) < law2.predict(x, d_mid) else names[1]
        entry["note"] = (f"no crossing for D in [{SEARCH_RANGE[0]:g}, {SEARCH_RANGE[1]:g}]: "
                         f"{better} is predicted better at every data size")
        entry["better_everywhere"] = better
    pairs = [(a, b) for a, b in zip(samples1, samples2) if a is not None and b is not None]
    rep_roots = [crossings(a, b, x) for a, b in pairs]
    for i, root in enumerate(roots):
        below, above = better_below_above(law1, law2, x, root, names)
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
