"""Build the report's data model (ftscale.report.model) from what every executor has: the
study's name and spec, its planned runs (ftscale.grid.expand), the run results by run id, the
study fit (ftscale.law.StudyFit, or None before one exists) and the executor's notes.

No workdir and no cluster is read here, so `ftscale run`, `ftscale report` and the cluster's
fit Job can all render the same page from the same data.
"""

from __future__ import annotations

import math
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

from ftscale import grid
from ftscale.report import figures
from ftscale.report.model import (Condition, Crossing, Eq3Row, FailedRun, FitView, Flag,
                                  FormComparison, Law, Parameter, ReportModel)
from ftscale.results import RunResult

MULTIPLICATIVE = "multiplicative"  # the law form critical sizes and the overview use
SYMBOLS = {"A": "A", "alpha": "α", "beta": "β", "E": "E", "B": "B"}
PARAMETER_ORDER = ("A", "alpha", "beta", "E", "B")


def size_label(method: str, size: int | None) -> str:
    """'lora (r=8)', 'prompt (len=100)', 'fmt'."""
    if size is None:
        return method
    return f"{method} (r={size})" if method == "lora" else f"{method} (len={size})"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values: list[float]) -> float | None:
    return statistics.mean(values) if values else None


# ---- the grid and its results -----------------------------------------------------------------
def x_of_models(spec: Mapping, runs: Sequence[grid.PlannedRun],
                results: Mapping[str, RunResult]) -> dict[str, float]:
    """X_m per model: what a run reported (the trainer counts the parameters), else what the
    spec declares."""
    out: dict[str, float] = {}
    for run in runs:
        res = results.get(run.run_id)
        if res is not None and res.ok and res.model_params:
            out.setdefault(run.key.model, float(res.model_params))
    for model in spec.get("models", []):
        if model.get("parameters") and model["name"] not in out:
            out[model["name"]] = float(model["parameters"])
    return out


def conditions(runs: Sequence[grid.PlannedRun], results: Mapping[str, RunResult],
               metric_names: Sequence[str], x_m: Mapping[str, float]) -> tuple[Condition, ...]:
    """One row per (model, method, PET size, data size) of the grid, in the grid's order; its
    seeds pooled (mean, and standard deviation with two or more seeds)."""
    groups: dict[tuple, list[grid.PlannedRun]] = defaultdict(list)
    for run in runs:
        k = run.key
        groups[(k.model, k.method, k.pet_size, k.data_size)].append(run)
    rows = []
    for (model, method, pet_size, data_size), members in groups.items():
        done = [results[r.run_id] for r in members if r.run_id in results]
        ok = [r for r in done if r.ok]
        losses = [r.test_loss for r in ok if _finite(r.test_loss) is not None]
        metrics = tuple(_mean([r.generation[m] for r in ok
                               if _finite(r.generation.get(m)) is not None])
                        for m in metric_names)
        rows.append(Condition(
            model=model, x_m=x_m.get(model), method=method, pet_size=pet_size,
            data_size=data_size, runs_planned=len(members), runs_succeeded=len(ok),
            runs_failed=len(done) - len(ok), loss_mean=_mean(losses),
            loss_sd=statistics.stdev(losses) if len(losses) > 1 else None, metrics=metrics))
    return tuple(rows)


def failed_runs(runs: Sequence[grid.PlannedRun],
                results: Mapping[str, RunResult]) -> tuple[FailedRun, ...]:
    out = []
    for run in runs:
        res = results.get(run.run_id)
        if res is None or res.ok:
            continue
        k = run.key
        out.append(FailedRun(run.run_id, k.model, k.method, k.pet_size, k.data_size, k.seed,
                             res.reason or res.outcome, res.message or ""))
    return tuple(out)


def summary_lines(spec: Mapping, runs: Sequence[grid.PlannedRun],
                  results: Mapping[str, RunResult],
                  fit_seconds: float | None) -> tuple[tuple[str, str], ...]:
    ok = [r for r in results.values() if r.ok]
    wall = sum(r.wall_seconds or 0 for r in results.values())
    devices = sorted({r.device for r in ok if r.device})
    methods = ", ".join(m["name"] + (f" (sizes {', '.join(map(str, m['sizes']))})"
                                     if m.get("sizes") else "") for m in spec["methods"])
    compute = f"{wall / 60:.1f} min of run time in all"
    if devices:
        compute += " on " + ", ".join(devices)
    if fit_seconds is not None:
        compute += f"; fit {fit_seconds:.0f} s"
    return (
        ("task", spec["task"]["name"]),
        ("models", ", ".join(m["name"] for m in spec["models"])),
        ("methods", methods),
        ("data sizes D_f", ", ".join(map(str, sorted({r.key.data_size for r in runs})))),
        ("seeds", ", ".join(map(str, spec.get("seeds", [])))),
        ("runs", f"{len(runs)} in the grid, {len(ok)} succeeded, {len(results) - len(ok)} "
                 f"failed, {len(runs) - len(results)} not finished"),
        ("compute", compute),
    )


def overview(runs: Sequence[grid.PlannedRun], results: Mapping[str, RunResult], study_fit,
             x_m: Mapping[str, float], salt: str):
    """Methods compared on each model at their default PET sizes, with the fitted
    multiplicative model-size law of each method."""
    defaults = {r.key.method: grid.default_size(r.method) for r in runs}
    losses: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    for run in runs:
        res = results.get(run.run_id)
        k = run.key
        if res is None or not res.ok or k.pet_size != defaults[k.method] \
                or _finite(res.test_loss) is None:
            continue
        losses[k.model][size_label(k.method, k.pet_size)][k.data_size].append(res.test_loss)
    points = {m: {label: {d: statistics.mean(v) for d, v in per.items()}
                  for label, per in by_method.items()} for m, by_method in losses.items()}
    curves: dict[str, dict[str, np.ndarray]] = {}
    all_d = [d for by_method in points.values() for per in by_method.values() for d in per]
    if study_fit is not None and all_d:
        d_grid = np.geomspace(min(all_d) / 1.3, max(all_d) * 1.3, 100)
        for model in points:
            if model not in x_m:
                continue
            curves[model] = {"d": d_grid}
            for method, size in defaults.items():
                law = study_fit.law(method, grid.MODEL_SIZE)
                if law is not None:
                    curves[model][size_label(method, size)] = law.params.predict(x_m[model],
                                                                                 d_grid)
    titles = {m: m + (f"  (X_m = {x_m[m]:.3g})" if m in x_m else "") for m in points}
    return figures.overview_figure(points, curves, titles, salt)


# ---- the fit ----------------------------------------------------------------------------------
def parameters(law) -> tuple[Parameter, ...]:
    values = law.params.values()
    out = []
    for name in PARAMETER_ORDER:
        if name not in values:
            continue
        iv = law.intervals.get(name)
        out.append(Parameter(name, SYMBOLS[name], _finite(values[name]),
                             _finite(iv[0]) if iv else None, _finite(iv[1]) if iv else None))
    return tuple(out)


def flags_of(law_doc: Mapping) -> tuple[Flag, ...]:
    """The degenerate-fit flags of a law document (FittedLaw.to_dict()); none when the engine
    does not report flags."""
    return tuple(Flag(str(f.get("code", "")), f.get("parameter"), str(f.get("message", "")))
                 for f in law_doc.get("flags") or ())


def _anchor(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "law"
    anchor, n = base, 2
    while anchor in used:
        anchor, n = f"{base}-{n}", n + 1
    used.add(anchor)
    return anchor


def law_view(law, used_anchors: set[str], salt: str) -> Law:
    method = str(dict(law.group).get("method"))
    title = f"{method} · {law.factor} · {law.form}" + (
        f" · X = {law.x_value:.3g}" if law.x_value is not None else "")
    boot = law.bootstrap
    bootstrap = (f"{boot.requested} resamples of runs, {boot.converged} converged, "
                 f"{round(boot.level * 100)} % intervals") if boot is not None else ""
    try:
        figure = figures.law_figure(law, title, salt) if law.points else None
    except (ValueError, OverflowError):  # a degenerate law can predict inf/NaN everywhere
        figure = None
    return Law(
        anchor=_anchor(f"law {title}", used_anchors), method=method, factor=str(law.factor),
        form=law.form, x_value=law.x_value, parameters=parameters(law),
        delta_fit=_finite(law.delta_fit), delta_heldout=_finite(law.delta_heldout),
        n_fit=law.n_fit, n_heldout=law.n_heldout, n_runs=law.n_runs,
        converged=bool(law.convergence.converged),
        convergence_message=str(law.convergence.message or ""), bootstrap=bootstrap,
        flags=flags_of(law.to_dict(with_points=False)), figure=figure)


def crossings(critical: Sequence[Mapping]) -> tuple[Crossing, ...]:
    out = []
    for c in critical:
        if c["form"] != MULTIPLICATIVE:
            continue
        pair = " vs ".join(c["methods"])
        if not c["crossings"]:
            out.append(Crossing(pair, c["factor"], _finite(c.get("x")), None, None, None, False,
                                None, None, c.get("better_everywhere")))
            continue
        for r in c["crossings"]:
            iv = r.get("interval")
            out.append(Crossing(pair, c["factor"], _finite(c.get("x")), _finite(r["data_size"]),
                                _finite(iv[0]) if iv else None, _finite(iv[1]) if iv else None,
                                not r.get("within_observed_range", True),
                                r.get("better_below"), r.get("better_above"), None))
    return tuple(out)


def eq3_rows(eq3: Sequence[Mapping]) -> tuple[Eq3Row, ...]:
    def iv(e, key):
        v = e.get("intervals", {}).get(key)
        return (v[0], v[1]) if v else None

    return tuple(Eq3Row(" vs ".join(e["methods"]), e["factor"], _finite(e.get("log10_H")),
                        iv(e, "log10_H"), _finite(e.get("gamma")), iv(e, "gamma"))
                 for e in eq3)


def fit_view(study_fit, next_salt) -> FitView:
    from ftscale.law.markdown import findings

    used: set[str] = set()
    laws = tuple(law_view(law, used, next_salt()) for law in study_fit.laws)
    single = tuple(law_view(law, used, next_salt()) for law in study_fit.single_laws)
    cmp_ = study_fit.comparison
    critical_figures = []
    for factor in dict.fromkeys(c["factor"] for c in study_fit.critical
                                if c["form"] == MULTIPLICATIVE):
        fig = figures.critical_figure(
            [c for c in study_fit.critical if c["form"] == MULTIPLICATIVE
             and c["factor"] == factor], f"critical data size — {factor}", next_salt())
        if fig is not None:
            critical_figures.append(fig)
    return FitView(
        huber_delta=f"{study_fit.options.delta:g}", residual=study_fit.options.residual,
        bootstrap=study_fit.options.bootstrap,
        confidence_percent=round(study_fit.options.confidence * 100),
        laws=laws, single_laws=single,
        comparison=tuple(FormComparison(r["method"], r["factor"], _finite(r["multiplicative"]),
                                        _finite(r["additive"]), r["better"])
                         for r in cmp_.get("per_factor", ())),
        better_form=cmp_.get("better_form"),
        mean_heldout=(_finite(cmp_.get("mean_heldout_multiplicative")),
                      _finite(cmp_.get("mean_heldout_additive"))),
        crossings=crossings(study_fit.critical), critical_figures=tuple(critical_figures),
        eq3=eq3_rows(study_fit.eq3), findings=tuple(findings(study_fit)),
        notes=tuple(study_fit.notes), n_flags=sum(len(l.flags) for l in laws + single))


# ---- the whole page ---------------------------------------------------------------------------
def build_report_model(study: str, spec: Mapping, runs: Sequence[grid.PlannedRun],
                       results: Mapping[str, RunResult], study_fit=None,
                       notes: Sequence[str] = (), *, source: str = "",
                       generated: str | None = None,
                       fit_seconds: float | None = None) -> ReportModel:
    """The report of a study: `spec` with the CRD defaults applied, `runs` its grid, `results`
    by run id (results of runs not in `runs` are left out), `study_fit` a StudyFit or None,
    `notes` the executor's notes. Draws the plots (matplotlib), so it takes a second or two
    per dozen laws."""
    results = {r.run_id: results[r.run_id] for r in runs if r.run_id in results}
    counter = iter(range(1_000_000))

    def next_salt() -> str:
        return f"{study}-fig{next(counter)}"

    metric_names = tuple(spec.get("evaluation", {}).get("generation", {}).get("metrics", []))
    x_m = x_of_models(spec, runs, results)
    return ReportModel(
        study=study,
        generated=generated or time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        source=source,
        summary=summary_lines(spec, runs, results, fit_seconds),
        metric_names=metric_names,
        conditions=conditions(runs, results, metric_names, x_m),
        failed=failed_runs(runs, results),
        overview=overview(runs, results, study_fit, x_m, next_salt()),
        fit=fit_view(study_fit, next_salt) if study_fit is not None else None,
        notes=tuple(notes),
        spec_yaml=yaml.safe_dump({"spec": dict(spec)}, sort_keys=False, allow_unicode=True,
                                 width=100),
    )
