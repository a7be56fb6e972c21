"""Fit a workdir's results and write its report: report.md, fit.json, plots/*.png.

The fit is the law engine's study protocol (ftscale.law.fit_study) on the same input document
the cluster's fit Job reads (ftscale.grid.fit_job_input), so a laptop study and a cluster study
with the same results get the same fit. The report wraps the engine's sections (fitted laws
with intervals, Δ_fit/Δ_held-out, multiplicative vs additive, critical data sizes, findings)
with what only the executor knows: the grid, the results table, failed runs, timings, and a
plot comparing the methods on each model.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, TextIO

from ftscale import grid
from ftscale.api.fit_summary import fit_status
from ftscale.api.phases import FIT_FAILED_PHASE, FIT_SUCCEEDED_PHASE, NOTHING_TO_FIT
from ftscale.local.workdir import Workdir, write_atomic
from ftscale.results import RunResult
from ftscale.spec import Study

# ---- the fit ---------------------------------------------------------------------------------
def fit_results(study: Study, results: list[RunResult], progress: TextIO | None = None):
    """(StudyFit or None, notes): the cluster's fit Job's own function (ftscale.law.job.
    fit_document) on the same input document (ftscale.grid.fit_job_input). Factors the runs
    cannot support are skipped by the law engine with a reason (StudyFit.skipped), exactly as
    on a cluster; None only when nothing at all can be fitted."""
    from ftscale.law import LawInputError, LawOptions
    from ftscale.law.job import fit_document

    doc = grid.fit_job_input(study.name, study.spec, results)
    if not doc["factors"]:
        return None, ["no factor has runs at two or more X values yet: nothing to fit"]
    options = LawOptions.from_spec(doc["law"])
    bar = None
    n_forms = len([f for f in options.forms if f != "single"])
    if progress is not None and options.bootstrap and n_forms:
        from tqdm import tqdm
        n_methods = len(doc["factors"])
        bar = tqdm(total=options.bootstrap * n_methods, desc="fit (bootstrap)",
                   unit="resample", file=progress, leave=False)
    try:
        study_fit, _counts = fit_document(doc, progress=bar.update if bar else None)
    except LawInputError as exc:
        return None, [f"no law was fitted: {exc}"]
    finally:
        if bar is not None:
            bar.close()
    return study_fit, []


# ---- tables ----------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def _size_label(method: str, size: int | None) -> str:
    if size is None:
        return method
    # no '|' here: these labels go into markdown tables
    return f"{method} (r={size})" if method == "lora" else f"{method} (len={size})"


def results_table(runs: list[grid.PlannedRun], results: dict[str, RunResult],
                  metric: str = "test_loss") -> list[str]:
    """Markdown pivot: one row per (model, method, PET size), one column per data size; cells
    are seed means (± sd when there are several seeds; '·' for runs without a result). A
    generation metric's single-seed cell also shows its 95% bootstrap interval, [low, high]."""
    data_sizes = sorted({r.key.data_size for r in runs})
    cells: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    bounds: dict[tuple, tuple] = {}  # (row, data size) -> the metric's interval
    xs: dict[str, int | None] = {}
    row_keys: list[tuple] = []
    for run in runs:
        k = run.key
        row = (k.model, k.method, k.pet_size)
        if row not in cells:
            row_keys.append(row)
        cells[row]  # noqa: B018 - creates the row so runs without results still show
        result = results.get(run.run_id)
        if result is None or not result.ok:
            continue
        xs.setdefault(k.model, result.model_params)
        value = result.test_loss if metric == "test_loss" else result.generation.get(metric)
        if value is not None:
            cells[row][k.data_size].append(value)
            if metric != "test_loss" and f"{metric}_ci_low" in result.generation:
                bounds[row, k.data_size] = (result.generation[f"{metric}_ci_low"],
                                            result.generation.get(f"{metric}_ci_high"))
    header = "| model | X_m | method | " + " | ".join(f"D={d}" for d in data_sizes) + " |"
    lines = [header, "|---|---|---|" + "---|" * len(data_sizes)]
    for row in row_keys:
        model, method, size = row
        out = []
        for d in data_sizes:
            values = cells[row].get(d)
            if not values:
                out.append("·" if any(r.key.data_size == d and (r.key.model, r.key.method,
                                                                  r.key.pet_size) == row
                                      for r in runs) else "")
            elif len(values) == 1 and (row, d) in bounds:
                low, high = bounds[row, d]
                out.append(f"{_fmt(values[0])} [{_fmt(low, 3)}, {_fmt(high, 3)}]")
            elif len(values) == 1:
                out.append(_fmt(values[0]))
            else:
                out.append(f"{_fmt(statistics.mean(values))} ± {_fmt(statistics.stdev(values), 2)}")
        lines.append(f"| {model} | {_fmt(xs.get(model), 3)} | {_size_label(method, size)} | "
                     + " | ".join(out) + " |")
    return lines


# A generation metric earns a table only when it can tell conditions apart: every run scored on
# at least this many examples (below it, BLEU's 95% interval on short sentences spans several
# points), and intervals narrower than the spread of the scores (else the table shows noise).
MIN_GENERATION_EXAMPLES = 100


def generation_verdict(results: list[RunResult], metric: str) -> str | None:
    """Why `metric`'s table would show noise, or None when it can be shown. `results`: the
    succeeded runs that report the metric (the trainer adds `<metric>_n`, `_ci_low`, `_ci_high`)."""
    scores = [r.generation for r in results]
    if any(f"{metric}_n" not in g or f"{metric}_ci_low" not in g for g in scores):
        return (f"the runs do not say on how many examples {metric} was computed, nor its "
                f"interval (results of an older trainer); a score without its sample size "
                f"cannot be judged")
    fewest = min(g[f"{metric}_n"] for g in scores)
    widths = sorted(g[f"{metric}_ci_high"] - g[f"{metric}_ci_low"] for g in scores)
    width = widths[len(widths) // 2]
    if fewest < MIN_GENERATION_EXAMPLES:
        return (f"{metric} was computed on only {fewest} greedy outputs per run (at least "
                f"{MIN_GENERATION_EXAMPLES} are needed; evaluation.generation.maxExamples), and "
                f"its 95% bootstrap interval is {_fmt(width, 2)} wide (median over runs)")
    values = [g[metric] for g in scores]
    spread = max(values) - min(values)
    if len(values) > 1 and width >= spread:
        return (f"the median 95% bootstrap interval of {metric} ({_fmt(width, 2)} wide, on "
                f"{fewest}+ examples per run) is wider than the spread of the scores across "
                f"conditions ({_fmt(min(values), 3)} to {_fmt(max(values), 3)}): the "
                f"differences are within the sampling noise; raise "
                f"evaluation.generation.maxExamples")
    return None


def generation_section(runs: list[grid.PlannedRun], results: dict[str, RunResult],
                       metric: str) -> list[str]:
    """The report's `### <metric>` section: the table with sample sizes and intervals, or the
    reason it is left out (generation_verdict)."""
    lines = [f"### {metric} (greedy decoding, sample of the test set)", ""]
    scored = [results[r.run_id] for r in runs if r.run_id in results and results[r.run_id].ok
              and metric in results[r.run_id].generation]
    if not scored:
        return lines + ["No succeeded run reported it.", ""]
    verdict = generation_verdict(scored, metric)
    if verdict:
        return lines + [f"Table left out: {verdict}.", ""]
    counts = sorted({r.generation[f"{metric}_n"] for r in scored})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return lines + [f"Score on n = {n} test examples per run, with its 95% bootstrap interval "
                    f"over those examples [low, high].", "",
                    *results_table(runs, results, metric), ""]


def failed_table(runs: list[grid.PlannedRun], results: dict[str, RunResult]) -> list[str]:
    failed = [(r, results[r.run_id]) for r in runs
              if r.run_id in results and not results[r.run_id].ok]
    if not failed:
        return []
    lines = ["| run | model | method | D | seed | reason | message |", "|---|---|---|---|---|---|---|"]
    for run, res in failed:
        msg = (res.message or "").replace("|", "/").replace("\n", " ")[:200]
        lines.append(f"| {run.run_id} | {run.key.model} | {_size_label(run.key.method, run.key.pet_size)}"
                     f" | {run.key.data_size} | {run.key.seed} | {res.reason} | {msg} |")
    return lines


# ---- the methods-per-model plot ----------------------------------------------------------------
def plot_methods(runs: list[grid.PlannedRun], results: dict[str, RunResult], study_fit,
                 path: Path) -> Path | None:
    """One panel per model: each method's seed-mean test loss against D, with its fitted
    multiplicative model-size law when there is one — where the curves cross is the critical
    data size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    defaults = {}
    for run in runs:
        defaults.setdefault(run.key.method, grid.default_size(run.method))
    points: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    x_of: dict[str, float] = {}
    for run in runs:
        res = results.get(run.run_id)
        if res is None or not res.ok or run.key.pet_size != defaults[run.key.method]:
            continue
        points[run.key.model][run.key.method][run.key.data_size].append(res.test_loss)
        if res.model_params:
            x_of[run.key.model] = res.model_params
    models = [m for m in dict.fromkeys(r.key.model for r in runs) if m in points]
    if not models:
        return None
    ncols = min(4, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows + 0.4),
                             squeeze=False, sharey=True)
    flat = [ax for row in axes for ax in row]
    for ax in flat[len(models):]:
        ax.set_visible(False)
    colors = {"fmt": "tab:blue", "lora": "tab:orange", "prompt": "tab:green"}
    all_d = [d for m in points.values() for per in m.values() for d in per]
    d_grid = np.geomspace(min(all_d) / 1.3, max(all_d) * 1.3, 100)
    for ax, model in zip(flat, models):
        for method, per in points[model].items():
            ds = sorted(per)
            ax.plot(ds, [statistics.mean(per[d]) for d in ds], "o", color=colors.get(method),
                    label=_size_label(method, defaults[method]))
            law = study_fit.law(method, grid.MODEL_SIZE) if study_fit is not None else None
            if law is not None and model in x_of:
                ax.plot(d_grid, law.params.predict(x_of[model], d_grid), "-",
                        color=colors.get(method), alpha=0.7)
        ax.set_xscale("log")
        title = model + (f"  (X_m = {x_of[model]:.3g})" if model in x_of else "")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("finetuning examples D_f")
        ax.grid(True, which="both", alpha=0.25)
    for row in axes:
        row[0].set_ylabel("test loss (nats/token)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("methods compared on each model (points: runs; lines: fitted "
                 "multiplicative law)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- the report --------------------------------------------------------------------------------
def write_report(wd: Workdir, study: Study, runs: list[grid.PlannedRun],
                 results: dict[str, RunResult], *, metrics=None,
                 out: TextIO = sys.stdout, extra_sections: list[str] = ()) -> Path:
    """Fit, then write fit.json, plots/ and report.md into the workdir; returns report.md.
    `extra_sections`: Markdown lines put before the fit (the adaptive design's choices)."""
    results = {r.run_id: results[r.run_id] for r in runs if r.run_id in results}
    ok = [r for r in results.values() if r.ok]
    started = time.monotonic()
    study_fit, notes = (None, ["no succeeded runs yet"]) if not ok else \
        fit_results(study, list(results.values()), progress=sys.stderr)
    fit_seconds = time.monotonic() - started
    if wd.plots_dir.exists():
        for old in wd.plots_dir.glob("*.png"):
            old.unlink()
    plots: list[Path] = []
    if study_fit is not None:
        summary = study_fit.summary()
        write_atomic(wd.fit_file, study_fit.to_json())
        write_atomic(wd.fit_status_file, json.dumps(fit_status(
            None, None, FIT_SUCCEEDED_PHASE, summary=summary, message=summary.headline()),
            indent=2, sort_keys=True))
        plots = _plot_fit(study_fit, wd.plots_dir, notes)
        if metrics is not None:
            metrics.fit_done(summary)
    else:
        write_atomic(wd.fit_status_file, json.dumps(fit_status(
            None, None, FIT_FAILED_PHASE, reason=NOTHING_TO_FIT, message="; ".join(notes)),
            indent=2, sort_keys=True))
        if metrics is not None:
            metrics.fit_done(None, failed=True)
    overview = plot_methods(runs, results, study_fit, wd.plots_dir / "methods_per_model.png")
    if overview:
        plots.insert(0, overview)

    spec = study.spec
    n_failed = len(results) - len(ok)
    wall = sum(r.wall_seconds or 0 for r in results.values())
    devices = sorted({r.device for r in ok if r.device})
    methods = ", ".join(
        _size_label(m["name"], None) + (f" (sizes {', '.join(map(str, m['sizes']))})"
                                        if m.get("sizes") else "") for m in spec["methods"])
    lines = [
        f"# Scaling study `{study.name}`",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by ftscale from "
        f"`{wd.study_file}`.",
        "",
        f"- **task**: {spec['task']['name']}; **models**: "
        + ", ".join(m["name"] for m in spec["models"])
        + f"; **methods**: {methods}",
        f"- **data sizes** D_f: {', '.join(map(str, sorted({r.key.data_size for r in runs})))};"
        f" **seeds**: {', '.join(map(str, spec['seeds']))}",
        f"- **runs**: {len(runs)} in the grid, {len(ok)} succeeded, {n_failed} failed, "
        f"{len(runs) - len(results)} not finished",
        f"- **compute**: {wall / 60:.1f} min of run time in all"
        + (f" on {', '.join(devices)}" if devices else "") + f"; fit {fit_seconds:.0f} s",
        "",
        "The fitted quantity is the test loss: per-token negative log-likelihood (nats) of the "
        "target, at the checkpoint with the best dev loss (the paper's protocol), averaged "
        "over seeds.",
        "",
        "## Results: test loss (nats/token)",
        "",
        *results_table(runs, results),
        "",
    ]
    for metric in spec.get("evaluation", {}).get("generation", {}).get("metrics", []):
        lines += generation_section(runs, results, metric)
    failed = failed_table(runs, results)
    if failed:
        lines += ["### Failed runs", "", *failed, ""]
    if plots:
        lines += ["## Plots", ""]
        for p in plots:
            lines += [f"![{p.stem}](plots/{p.name})", ""]
    lines += list(extra_sections)
    lines += fit_sections(study_fit, notes)
    lines += [
        "## Files",
        "",
        "- `fit.json`: the full fit (unrounded parameters, bootstrap intervals, convergence, "
        "critical data sizes)",
        "- `results.jsonl`: one result per run — `ftscale fit results.jsonl` fits it again",
        "- `runs/<run id>/`: each run's trainer config, log and full result (with loss curves)",
        f"- re-render after editing `law` in study.yaml: `ftscale report {wd.root}`",
        "",
    ]
    write_atomic(wd.report_file, "\n".join(lines))
    for n in notes:
        print(f"note: {n}", file=out)
    _write_html_report(wd, study, runs, results, study_fit, notes, fit_seconds, out)
    return wd.report_file


def _write_html_report(wd: Workdir, study: Study, runs, results, study_fit, notes,
                       fit_seconds: float, out: TextIO) -> None:
    """report.html next to report.md, from the same data (ftscale.report); a page that
    cannot be made costs a warning, never report.md."""
    from ftscale.report import build_report_model, write_html

    try:
        path = write_html(wd.report_file.with_name("report.html"), build_report_model(
            study.name, study.spec, runs, results, study_fit, notes,
            source=str(wd.study_file), fit_seconds=fit_seconds))
    except Exception as exc:  # noqa: BLE001 - report.md is already written; say what broke
        print(f"warning: report.html not written ({type(exc).__name__}: {exc})", file=out)
        return
    print(f"report: {path.resolve()}", file=out)


def fit_sections(study_fit, notes: list[str]) -> list[str]:
    """The report's fitted-laws and notes sections (Markdown lines), for a local workdir and a
    cluster study alike."""
    from ftscale.law import render_markdown

    lines = ([render_markdown(study_fit), ""] if study_fit is not None
             else ["## Fitted scaling laws", "", "No law was fitted.", ""])
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return lines


def _plot_fit(study_fit, outdir: Path, notes: list[str]) -> list[Path]:
    """The law engine's charts (as ftscale.law.plot_study draws them), each family guarded: a
    chart that cannot be drawn costs a note in the report, never the report itself."""
    from ftscale.law.plots import plot_critical_sets, plot_laws

    paths: list[Path] = []
    for what, draw in (("law charts", lambda: plot_laws(
            list(study_fit.laws) + list(study_fit.single_laws), outdir)),
                       ("critical-data-size charts", lambda: plot_critical_sets(
                           study_fit.critical, outdir))):
        try:
            paths += draw()
        except Exception as exc:  # noqa: BLE001 - a plotting bug must not lose the report
            notes.append(f"the {what} could not be drawn ({type(exc).__name__}: {exc})")
    return paths
