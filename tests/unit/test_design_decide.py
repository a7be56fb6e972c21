"""ftscale.design.decide: spec.design → which runs of the grid may start, on studies whose
losses follow the paper's planted laws (ftscale.law.synthetic). The same function serves the
operator and `ftscale run`, so it is tested on both run types (grid.PlannedRun and the
operator's DesiredRun)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ftscale import grid
from ftscale.design import ADAPTIVE, GRID, decide, seed_design
from ftscale.law.synthetic import planted
from ftscale.results import FAILED, RunResult
from ftscale.spec import with_defaults

XS = {"m1": 1e9, "m2": 2e9, "m3": 4e9, "m4": 8e9}
DS = [1000, 2000, 4000, 8000, 16000, 32000]
LAWS = {m: planted(m, "model_size") for m in ("fmt", "lora", "prompt")}


def study(design=None, *, methods=None, models=None, law=None):
    spec = {
        "task": {"name": "toy-en-de"},
        "models": models or [{"name": n, "source": f"org/{n}", "parameters": int(x)}
                             for n, x in XS.items()],
        "methods": methods or [{"name": "fmt"}, {"name": "lora", "sizes": [4, 8]}],
        "dataSizes": DS,
        "law": law or {"heldOut": {"x": "none", "d": "none"}},
    }
    if design is not None:
        spec["design"] = design
    return with_defaults(spec)


def adaptive(**extra):
    return {"strategy": ADAPTIVE, "lossNoise": 0.01, **extra}


def loss(run, seed=0) -> float:
    law = LAWS[run.key.method]
    noise = np.random.default_rng([seed, run.key.data_size, int(XS[run.key.model] // 1e9)])
    return float(law.predict(XS[run.key.model], run.key.data_size)) + noise.normal(0, 0.01)


def result(run, *, ok=True, model_params=None) -> RunResult:
    k = run.key
    if not ok:
        return RunResult(study="s", run_id=run.run_id, model=k.model, method=k.method,
                         pet_size=k.pet_size, data_size=k.data_size, seed=k.seed,
                         outcome=FAILED, reason="Error", message="boom")
    return RunResult(study="s", run_id=run.run_id, model=k.model, method=k.method,
                     pet_size=k.pet_size, data_size=k.data_size, seed=k.seed,
                     model_params=model_params, test_loss=loss(run))


def finish(runs, ids, done=None):
    done = dict(done or {})
    by_id = {r.run_id: r for r in runs}
    for rid in ids:
        done[rid] = result(by_id[rid])
    return done


def run_to_stop(spec, runs, *, limit=200):
    """Start what decide admits, finish it, ask again — the executors' loop without processes.
    Returns (finished, last decision, reasons of every started run)."""
    done, reasons = {}, {}
    for _ in range(limit):
        d = decide(spec, runs, done, ())
        if not d.admitted:
            return done, d, reasons
        reasons.update(d.reasons)
        done = finish(runs, d.admitted, done)
    raise AssertionError("the design never stopped")


def test_grid_strategy_admits_every_unstarted_run_in_grid_order():
    spec = study()
    runs = grid.expand(spec)
    done = finish(runs, [runs[0].run_id])
    d = decide(spec, runs, done, [runs[1].run_id])
    assert d.strategy == GRID and not d.done and d.not_needed == ()
    assert d.admitted == tuple(r.run_id for r in runs[2:])
    assert "grid" in d.message()


def test_first_decision_is_the_seed_design_and_runs_outside_the_target_as_in_the_grid():
    spec = study(adaptive())
    runs = grid.expand(spec)
    d = decide(spec, runs, {}, ())
    seeds = [r for r in runs if d.reasons.get(r.run_id, "").startswith("seed design")]
    # five per method: corners and centre of log X × log D
    assert sorted(r.key.method for r in seeds) == ["fmt"] * 5 + ["lora"] * 5
    assert {(r.key.model, r.key.data_size) for r in seeds if r.key.method == "fmt"} >= {
        ("m1", 1000), ("m1", 32000), ("m4", 1000), ("m4", 32000)}
    # LoRA rank 8 is not the model-size sweep's default size: it runs as in the grid, after
    rank8 = [r.run_id for r in runs if r.key.pet_size == 8]
    assert d.admitted[-len(rank8):] == tuple(rank8)
    assert all("outside the adaptive design" in d.reasons[rid] for rid in rank8)
    assert len(d.waiting) == len(runs) - len(seeds) - len(rank8) and not d.done
    assert "seed design" in d.message()


def test_after_the_seed_design_it_chooses_at_most_batch_size_runs_and_says_why():
    spec = study(adaptive(batchSize=3), methods=[{"name": "fmt"}, {"name": "lora",
                                                                   "sizes": [4]}])
    runs = grid.expand(spec)
    seeds = decide(spec, runs, {}, ()).admitted
    done = finish(runs, seeds)
    d = decide(spec, runs, done, ())
    assert len(d.admitted) == 3 and not set(d.admitted) & set(done)
    for rid in d.admitted:
        assert "lowers the target's variance by" in d.reasons[rid]
        assert "GFLOP/token" in d.reasons[rid]  # no GPU-hour estimates: priced by FLOPs
    assert math.isfinite(d.half_width) and set(d.estimate) == {"fmt", "lora"}
    # two of them under way: one more may start, and not one of those two
    busy = d.admitted[:2]
    again = decide(spec, runs, done, busy)
    assert len(again.admitted) == 1 and again.admitted[0] not in busy
    # deterministic
    assert decide(spec, runs, done, ()) == d


def test_it_stops_at_the_half_width_and_leaves_the_rest_not_needed():
    spec = study(adaptive(batchSize=2, stopWhen={"halfWidth": 0.05}),
                 methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4]}])
    runs = grid.expand(spec)
    done, last, reasons = run_to_stop(spec, runs)
    assert last.done and last.stopped.startswith("target met")
    assert last.half_width <= 0.05
    assert len(done) < len(runs)
    assert set(last.not_needed) == {r.run_id for r in runs} - set(done)
    assert set(reasons) == set(done)  # every started run has its reason
    assert "not needed" in last.message()
    # the estimate is the planted loss at the target (largest X and D) within the interval
    for m in ("fmt", "lora"):
        truth = float(LAWS[m].predict(XS["m4"], DS[-1]))
        assert abs(last.estimate[m] - truth) < 3 * last.half_width


def test_a_tighter_stop_rule_runs_more():
    loose = study(adaptive(batchSize=2, stopWhen={"halfWidth": 0.05}))
    tight = study(adaptive(batchSize=2, stopWhen={"halfWidth": 0.012}))
    n_loose = len(run_to_stop(loose, grid.expand(loose))[0])
    n_tight = len(run_to_stop(tight, grid.expand(tight))[0])
    assert n_tight > n_loose


def test_the_stop_rule_waits_for_the_points_the_reports_law_forms_need():
    # stop at once (a huge half-width), but the additive form needs 6 (X, D) points per method
    spec = study(adaptive(batchSize=1, stopWhen={"halfWidth": 100.0}),
                 methods=[{"name": "fmt"}],
                 law={"heldOut": {"x": "none", "d": "none"},
                      "forms": ["multiplicative", "additive"]})
    runs = grid.expand(spec)
    done, last, _ = run_to_stop(spec, runs)
    assert last.done and len(done) == 6
    only_mult = study(adaptive(stopWhen={"halfWidth": 100.0}), methods=[{"name": "fmt"}],
                      law={"heldOut": {"x": "none", "d": "none"}, "forms": ["multiplicative"]})
    assert len(run_to_stop(only_mult, grid.expand(only_mult))[0]) == 5


def test_max_runs_caps_the_design():
    spec = study(adaptive(batchSize=4, stopWhen={"maxRuns": 8}), methods=[{"name": "fmt"}])
    runs = grid.expand(spec)
    done, last, _ = run_to_stop(spec, runs)
    assert len(done) == 8 and last.done and "maxRuns=8" in last.stopped


def test_a_failed_seed_run_is_replaced_not_chosen_again():
    spec = study(adaptive(), methods=[{"name": "fmt"}])
    runs = grid.expand(spec)
    seeds = decide(spec, runs, {}, ()).admitted
    by_id = {r.run_id: r for r in runs}
    done = finish(runs, seeds[1:])
    done[seeds[0]] = result(by_id[seeds[0]], ok=False)
    d = decide(spec, runs, done, ())
    assert d.admitted and seeds[0] not in d.admitted
    assert all(d.reasons[rid].startswith("seed design") for rid in d.admitted)


def test_a_model_of_unknown_size_runs_its_cheapest_run_first():
    models = [{"name": n, "source": f"org/{n}", "parameters": int(x)} for n, x in XS.items()]
    models[-1] = {"name": "m4", "source": "org/m4"}  # no parameters, not a toy model
    spec = study(adaptive(), methods=[{"name": "fmt"}], models=models)
    runs = grid.expand(spec)
    d = decide(spec, runs, {}, ())
    learn = [r for r in runs if r.key.model == "m4" and r.key.data_size == DS[0]][0]
    assert d.admitted == (learn.run_id,)  # the target (largest X) needs m4's size first
    assert "to learn the size of model m4" in d.reasons[learn.run_id]
    assert decide(spec, runs, {}, [learn.run_id]).admitted == ()  # nothing until it reports
    done = {learn.run_id: result(learn, model_params=int(XS["m4"]))}
    after = decide(spec, runs, done, ())
    assert after.admitted and all("seed design" in after.reasons[r] for r in after.admitted)


def test_critical_data_size_target():
    spec = study(adaptive(batchSize=2, target={"kind": "critical", "methods": ["fmt", "lora"],
                                               "model": "m4"}),
                 methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4]}])
    runs = grid.expand(spec)
    seeds = decide(spec, runs, {}, ()).admitted
    d = decide(spec, runs, finish(runs, seeds), ())
    assert d.admitted and "critical data size" in d.target
    assert all(("lowers the target's variance" in d.reasons[r]) or ("do not cross" in
               d.reasons[r]) for r in d.admitted)


def test_the_operators_desired_runs_are_priced_in_gpu_hours():
    from dataclasses import replace

    from ftscale.controller.templates import DesiredRun

    spec = study(adaptive(batchSize=2), methods=[{"name": "fmt"}])
    planned = grid.expand(spec)
    desired = [DesiredRun(key=r.key, config={}, gpu_hours=1e-12 * XS[r.key.model]
                          * r.key.data_size) for r in planned]
    seeds = decide(spec, desired, {}, ()).admitted
    assert seeds == decide(spec, planned, {}, ()).admitted  # same design on both run types
    d = decide(spec, desired, finish(planned, seeds), ())
    assert d.cost_unit == "GPU-h" and all("GPU-h" in d.reasons[r] for r in d.admitted)
    # a run the plan prices 1000 times dearer is no longer the first choice
    first = d.admitted[0]
    dear = [replace(r, gpu_hours=r.gpu_hours * 1000) if r.run_id == first else r
            for r in desired]
    assert decide(spec, dear, finish(planned, seeds), ()).admitted[0] != first


def test_seed_design_matches_the_planner():
    spec = study(adaptive(), methods=[{"name": "fmt"}])
    runs = grid.expand(spec)
    from ftscale.design import Candidate

    cands = [Candidate(r.run_id, "fmt", XS[r.key.model], r.key.data_size) for r in runs]
    assert set(decide(spec, runs, {}, ()).admitted) == {c.run_id for c in seed_design(cands)}


@pytest.mark.parametrize("design", [None, {"strategy": "grid"}])
def test_no_design_is_the_grid(design):
    spec = study(design)
    runs = grid.expand(spec)
    assert decide(spec, runs, {}, ()).admitted == tuple(r.run_id for r in runs)


def test_space_filling_takes_the_candidate_farthest_from_what_ran():
    from ftscale.design import Candidate, space_filling

    cands = [Candidate(f"{x}-{d}", "fmt", x, d) for x in (1e9, 2e9, 4e9, 8e9)
             for d in (1e3, 1e4, 1e5)]
    corners = {"1000000000.0-1000.0", "1000000000.0-100000.0", "8000000000.0-1000.0",
               "8000000000.0-100000.0"}
    pick = space_filling(cands, corners)
    assert pick.d == 1e4 and pick.x in (2e9, 4e9)  # the middle of the box
    assert pick.x == 2e9  # of two equally far, the cheaper
    assert space_filling(cands, {c.run_id for c in cands}) is None
