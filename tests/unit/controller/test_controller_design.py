"""spec.design adaptive on the operator side (issue 16): the plan starts only the runs
ftscale.design.decide admits — the same function `ftscale run` uses — with the reason on each
Job and in a RunChosen Event, shows the design in status.design, and once the stop rule holds
the runs left are not needed: the study is complete and the fit starts."""

from __future__ import annotations

import copy
import math

from ftscale.controller import names
from ftscale.controller.plan import plan
from ftscale.api import phases as ph

from controller_testkit import NOW, SETTINGS, STUDY, result, runs

SPEC = {
    "task": {"name": "toy-en-de"},
    "models": [{"name": f"m{i}", "source": f"toy:m{i}", "parameters": 1000 * 4 ** i} for i in range(3)],
    "methods": [{"name": "fmt"}],
    "dataSizes": [100, 200, 400, 800],
    "seeds": [0],
    "execution": {"image": "trainer:1", "maxParallelRuns": 20},
    "design": {"strategy": "adaptive", "target": {"kind": "extrapolation"}, "batchSize": 2,
               "stopWhen": {"maxRuns": 7}},
}


def law(run) -> float:
    x, d = 1000 * 4 ** int(run.key.model[1:]), run.key.data_size
    return 40.0 * x ** -0.1 * d ** -0.12 + 1.4


def test_the_operator_starts_what_the_design_chooses_and_says_why():
    grid = runs(SPEC)
    assert len(grid) == 12
    first = plan(STUDY, SPEC, None, grid, [], [], NOW, SETTINGS)
    created = [m for m in first.create_jobs if m["metadata"]["labels"][names.LABEL_COMPONENT] == "run"]
    assert 0 < len(created) < len(grid)  # the seed design, not the grid
    assert all(m["metadata"]["annotations"].get(names.ANNOTATION_DESIGN_REASON) for m in created)
    chosen_events = [e for e in first.events if e.reason == ph.EVENT_RUN_CHOSEN]
    assert len(chosen_events) == len(created)
    assert first.status["design"]["strategy"] == "adaptive" and not first.status["design"]["done"]


def test_once_the_stop_rule_holds_the_rest_is_not_needed_and_the_fit_starts():
    grid = runs(SPEC)
    s = copy.deepcopy(SPEC)
    # every run the design would reach by maxRuns is finished: feed results until it stops
    recorded = {}
    status = None
    for _ in range(10):
        p = plan(STUDY, s, status, grid, [], [], NOW, SETTINGS, recorded=recorded)
        started = [m["metadata"]["labels"][names.LABEL_RUN] for m in p.create_jobs
                   if m["metadata"]["labels"][names.LABEL_COMPONENT] == "run"]
        if not started:
            break
        by_id = {r.run_id: r for r in grid}
        recorded.update({rid: result(by_id[rid], law(by_id[rid])) for rid in started})
        status = p.status
    assert p.status["design"]["done"] is True
    assert p.status["design"]["notNeeded"] == len(grid) - len(recorded) > 0
    assert len(recorded) == 7  # stopWhen.maxRuns
    assert p.fit_job is not None  # complete: the fit of what the design ran
    assert p.status["runsSucceeded"] == 7
    assert not math.isnan(p.status["design"]["halfWidth"] or 0.0)


def test_the_plans_strategy_name_is_the_designs():
    from ftscale import design
    from ftscale.controller import plan as plan_module

    assert plan_module.ADAPTIVE == design.ADAPTIVE
