"""The study's grid as the operator needs it: ftscale.grid's runs → DesiredRun (with the
trainer config each Job carries). The only place the operator touches ftscale.grid, so that
`ftscale run` and the operator expand a spec the same way.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from ftscale import grid
from ftscale.controller import prefetch
from ftscale.controller.templates import DesiredRun, multinode_name_problem
from ftscale.identity import job_name
from ftscale.spec import with_defaults

log = logging.getLogger(__name__)


class StudyRejected(ValueError):
    """A spec the API server accepted but no run of which should start (e.g. a run that cannot
    fit its GPUs' memory); the message says what to change."""


def gpu_hour_estimates(study: str, spec: Mapping[str, Any]) -> dict[str, float | None]:
    """run id → estimated GPU-hours (the cost plan, ftscale.costplan). A spec the cost plan
    cannot price (bad GPU settings) prices nothing: the study still runs, without a budget
    check on estimates (measured GPU-hours still count). Raises StudyRejected when a run
    cannot fit `gpus × execution.gpuMemoryGiB` — the same check `ftscale run` makes."""
    from ftscale import costplan

    try:
        study_plan = costplan.plan_study(dict(spec), study)
        problems = (costplan.fit_problems(dict(spec), study_plan)
                    if costplan.capacity_declared(dict(spec)) else [])
    except Exception as exc:  # noqa: BLE001 - pricing must never stop a study
        log.warning("study %s: no cost plan (%s: %s)", study, type(exc).__name__, exc)
        return {}
    if problems:
        raise StudyRejected("runs that cannot fit their GPUs' memory: " + " | ".join(problems))
    return {r.run_id: r.gpu_hours for r in study_plan.runs}


def desired_runs(study: str, spec: Mapping[str, Any]) -> list[DesiredRun]:
    """Every run of the spec's grid, in grid order. Raises (KeyError/ValueError/TypeError) on a
    spec the grid cannot expand, StudyRejected on one whose runs cannot start (GPU memory; a
    study name too long for the pod hostnames of its multi-node runs); the caller reports
    both as InvalidSpec."""
    full = with_defaults(dict(spec))
    problems = prefetch.spec_problems(full)  # e.g. a revision without execution.modelCache
    if problems:
        raise StudyRejected("; ".join(problems))
    estimates = gpu_hour_estimates(study, full)
    out = []
    too_long: dict[str, str] = {}
    planned_runs = grid.expand(full)
    configs = grid.trainer_configs(study, full, planned_runs)
    for planned, config in zip(planned_runs, configs):
        nodes = int(planned.model.get("nodes") or 1)
        name = job_name(study, planned.key)
        problem = multinode_name_problem(name, nodes)
        if problem:
            too_long.setdefault(planned.key.model, problem)
        x_values = {}
        if "parameters" in planned.model:
            x_values["model_params"] = planned.model["parameters"]
        if "pretrainingTokens" in planned.model:
            x_values["pretrain_tokens"] = planned.model["pretrainingTokens"]
        out.append(DesiredRun(
            key=planned.key,
            config=config,
            gpus=int(planned.gpus or 0),
            nodes=nodes,
            resources=dict(planned.resources or {}),
            x_values=x_values,
            job_name=name,
            image=planned.model.get("image"),
            gpu_hours=estimates.get(planned.run_id),
        ))
    if too_long:
        # The API server would refuse every such Job; say so once, before any run starts.
        raise StudyRejected("; ".join(f"model {model}: {problem}" for model, problem in too_long.items()))
    return out
