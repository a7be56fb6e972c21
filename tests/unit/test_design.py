"""The adaptive planner (ftscale.design): seed design, determinism, cost-awareness, stop rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftscale.design import (CRITICAL, EXTRAPOLATION, Candidate, Target, add_observation,
                            information, next_runs, seed_design, variance_reductions)

XS = (1e9, 2e9, 4e9, 8e9)
DS = (1e4, 2e4, 4e4, 8e4, 1.6e5)
LAWS = {"fmt": (3e3, 0.4, 0.15, 0.75), "lora": (2e2, 0.3, 0.08, 0.62)}


def grid(methods=("fmt",)):
    return [Candidate(f"{m}-{x:.0e}-{d:.0e}", m, x, d) for m in methods for x in XS for d in DS]


def flops_cost(cands):
    return {c.run_id: 6 * c.x * c.d * 128 / (400e12 * 3600) for c in cands}


def observe(cands, ids, sigma=0.01, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for c in cands:
        a, al, be, e = LAWS[c.method]
        out[c.run_id] = a * c.x ** -al * c.d ** -be + e + float(rng.normal(0, sigma))
    return {i: out[i] for i in ids}


def extrap(methods=("fmt",)):
    return Target(EXTRAPOLATION, methods, 16e9, 3.2e5)


def test_seed_design_is_corners_and_centre_per_method():
    cands = grid(("fmt", "lora"))
    seeds = seed_design(cands)
    assert len(seeds) == 10
    fmt = {(c.x, c.d) for c in seeds if c.method == "fmt"}
    assert fmt == {(1e9, 1e4), (1e9, 1.6e5), (8e9, 1e4), (8e9, 1.6e5), (2e9, 4e4)} or \
        fmt == {(1e9, 1e4), (1e9, 1.6e5), (8e9, 1e4), (8e9, 1.6e5), (4e9, 4e4)}


def test_first_plan_is_the_seed_design_and_says_so():
    cands = grid()
    plan = next_runs(cands, {}, extrap(), batch_size=3, cost=flops_cost(cands))
    assert {c.run_id for c in plan.choices} == {c.run_id for c in seed_design(cands)}
    assert all("seed design" in c.reason for c in plan.choices)
    assert plan.stopped is None and math.isnan(plan.half_width)


def test_choices_are_deterministic_for_a_seed_and_explained():
    cands = grid()
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    kw = dict(batch_size=4, cost=flops_cost(cands), rng_seed=7)
    a = next_runs(cands, done, extrap(), **kw)
    b = next_runs(cands, done, extrap(), **kw)
    assert a == b
    assert len(a.choices) == 4 and len({c.run_id for c in a.choices}) == 4
    assert not {c.run_id for c in a.choices} & set(done)
    for c in a.choices:
        assert "lowers the target's variance by" in c.reason and "GPU-h" in c.reason
        assert c.variance_reduction > 0
    assert a.half_width > 0 and set(a.estimate) == {"fmt"}


def test_sherman_morrison_matches_a_fresh_inverse():
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(6, 4))
    new = rng.normal(size=4)
    c = rng.normal(size=4)
    cov = np.linalg.inv(information(rows, 0.01))
    after = np.linalg.inv(information(np.vstack([rows, new]), 0.01))
    assert np.allclose(add_observation(cov, new, 0.01), after, rtol=1e-6, atol=1e-12)
    drop = variance_reductions(cov, c, new[None, :], 0.01)[0]
    assert drop == pytest.approx(c @ cov @ c - c @ after @ c, rel=1e-6)


def test_prefers_cheap_runs_when_information_is_equal():
    cands = grid()
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    uniform = {c.run_id: 1.0 for c in cands}
    first = next_runs(cands, done, extrap(), batch_size=1, cost=uniform).choices[0]
    # make the run the planner liked best 1000 times dearer: it must pick another one
    dear = dict(uniform)
    dear[first.run_id] = 1000.0
    second = next_runs(cands, done, extrap(), batch_size=1, cost=dear).choices[0]
    assert second.run_id != first.run_id
    # and a run made nearly free is taken first when it carries any information
    free = dict(uniform)
    cheap = next(c for c in cands if c.run_id not in done and c.run_id != first.run_id)
    free[cheap.run_id] = 1e-9
    assert next_runs(cands, done, extrap(), batch_size=1, cost=free).choices[0].run_id == \
        cheap.run_id


def test_stops_when_the_target_is_met_and_when_nothing_is_left():
    cands = grid()
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    cost = flops_cost(cands)
    plan = next_runs(cands, done, extrap(), batch_size=2, cost=cost)
    assert plan.choices
    loose = next_runs(cands, done, extrap(), batch_size=2, cost=cost,
                      stop_half_width=plan.half_width * 1.01)
    assert loose.choices == () and loose.stopped.startswith("target met")
    everything = observe(cands, [c.run_id for c in cands])
    final = next_runs(cands, everything, extrap(), batch_size=2, cost=cost)
    assert final.choices == () and final.stopped == "no candidate left"


def test_pending_runs_count_as_information_and_are_not_chosen_again():
    cands = grid()
    cost = flops_cost(cands)
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    first = next_runs(cands, done, extrap(), batch_size=4, cost=cost)
    started = [c.run_id for c in first.choices]
    again = next_runs(cands, done, extrap(), batch_size=4, cost=cost, pending=started)
    assert not {c.run_id for c in again.choices} & set(started)
    # same fit, more (pending) rows in the information matrix: a narrower interval
    assert again.half_width < first.half_width


def test_budget_limits_the_batch():
    cands = grid()
    cost = flops_cost(cands)
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    spent = sum(cost[r] for r in done)
    cheapest = min(cost[c.run_id] for c in cands if c.run_id not in done)
    plan = next_runs(cands, done, extrap(), batch_size=5, cost=cost, budget_gpu_hours=spent,
                     spent_gpu_hours=spent)
    assert plan.choices == () and plan.stopped == "budget exhausted"
    plan = next_runs(cands, done, extrap(), batch_size=5, cost=cost,
                     budget_gpu_hours=spent + cheapest * 1.5, spent_gpu_hours=spent)
    assert sum(c.gpu_hours for c in plan.choices) <= cheapest * 1.5 + 1e-12


def test_critical_data_size_target_plans_both_methods():
    cands = grid(("fmt", "lora"))
    done = observe(cands, [c.run_id for c in seed_design(cands)])
    target = Target(CRITICAL, ("fmt", "lora"), 4e9)
    plan = next_runs(cands, done, target, batch_size=4, cost=flops_cost(cands))
    assert plan.choices and len(plan.choices) == 4
    if plan.estimate:  # the laws cross: log D_c with a finite interval
        assert set(plan.estimate) == {"log_critical_data_size"}
        assert math.isfinite(plan.half_width)
    else:  # no crossing yet: parameter information instead, and the reason says so
        assert all("do not cross" in c.reason for c in plan.choices)


def test_target_validation():
    with pytest.raises(ValueError):
        Target("loss", ("fmt",), 1e9, 1e5)
    with pytest.raises(ValueError):
        Target(CRITICAL, ("fmt",), 1e9)
    with pytest.raises(ValueError):
        Target(EXTRAPOLATION, ("fmt",), 1e9)
