"""The report's data model: plain frozen values, nothing but numbers, strings and SVG text.

Built once (ftscale.report.build) from what both executors have — the study's name and spec,
the planned runs, the run results and the study fit — and rendered by a template
(ftscale.report.html). Text a study author wrote (names, messages, the spec) is kept as plain
strings: the template escapes it; only `Figure.svg` is inserted as markup, and it comes from
matplotlib, which escapes the text it draws.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One inline plot."""

    title: str
    svg: str  # a complete <svg> element (no XML declaration, no DOCTYPE)
    caption: str = ""


@dataclass(frozen=True)
class Condition:
    """One row of the results table: one (model, method, PET size, data size) cell of the grid,
    its seeds pooled."""

    model: str
    x_m: float | None  # non-embedding parameters of the model, when a run reported them
    method: str
    pet_size: int | None  # LoRA rank or prompt length; None for fmt
    data_size: int
    runs_planned: int
    runs_succeeded: int
    runs_failed: int
    loss_mean: float | None  # seed mean of the test loss (nats/token)
    loss_sd: float | None  # seed standard deviation (None with fewer than two seeds)
    metrics: tuple[float | None, ...]  # seed means, in ReportModel.metric_names order


@dataclass(frozen=True)
class FailedRun:
    run_id: str
    model: str
    method: str
    pet_size: int | None
    data_size: int
    seed: int
    reason: str
    message: str


@dataclass(frozen=True)
class Parameter:
    """A fitted parameter with its bootstrap percentile interval (None when there is none)."""

    name: str  # A, B, E, alpha, beta
    symbol: str  # what the page shows: A, B, E, α, β
    value: float | None
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Flag:
    """A degenerate-fit flag of a law (FittedLaw.to_dict()["flags"])."""

    code: str
    parameter: str | None
    message: str


@dataclass(frozen=True)
class Law:
    """One fitted law (joint or single-variable) and its figure."""

    anchor: str  # the HTML id of its section, unique in the page
    method: str
    factor: str
    form: str
    x_value: float | None  # single-variable laws: the X they were fitted at
    parameters: tuple[Parameter, ...]
    delta_fit: float | None
    delta_heldout: float | None
    n_fit: int
    n_heldout: int
    n_runs: int
    converged: bool
    convergence_message: str
    bootstrap: str  # e.g. "200 resamples, 198 converged, 95 %"; "" without a bootstrap
    flags: tuple[Flag, ...]
    figure: Figure | None  # the law against its runs, and the residuals


@dataclass(frozen=True)
class FormComparison:
    method: str
    factor: str
    multiplicative: float | None
    additive: float | None
    better: str | None


@dataclass(frozen=True)
class Crossing:
    """One row of the critical-data-size table."""

    methods: str  # "fmt vs lora"
    factor: str
    x: float | None
    data_size: float | None  # None: the laws do not cross
    low: float | None
    high: float | None
    extrapolated: bool  # outside the data sizes both methods ran at
    better_below: str | None
    better_above: str | None
    better_everywhere: str | None


@dataclass(frozen=True)
class Eq3Row:
    methods: str
    factor: str
    log10_h: float | None
    log10_h_interval: tuple[float, float] | None
    gamma: float | None
    gamma_interval: tuple[float, float] | None


@dataclass(frozen=True)
class FitView:
    """The fit's part of the page."""

    huber_delta: str  # the fit's options, as the page states them
    residual: str  # raw | log
    bootstrap: int  # resamples of runs; 0: no intervals
    confidence_percent: int
    laws: tuple[Law, ...]
    single_laws: tuple[Law, ...]
    comparison: tuple[FormComparison, ...]
    better_form: str | None
    mean_heldout: tuple[float | None, float | None]  # (multiplicative, additive)
    crossings: tuple[Crossing, ...]
    critical_figures: tuple[Figure, ...]
    eq3: tuple[Eq3Row, ...]
    findings: tuple[str, ...]
    notes: tuple[str, ...]  # the fit's own notes (skipped factors, held-out choices)
    n_flags: int


@dataclass(frozen=True)
class ReportModel:
    """Everything report.html shows."""

    study: str
    generated: str  # when the report was made, as text
    source: str  # where the data came from (a workdir, a cluster study)
    summary: tuple[tuple[str, str], ...]  # (label, value) lines of the grid summary
    metric_names: tuple[str, ...]  # generation metrics, in the columns' order
    conditions: tuple[Condition, ...]
    failed: tuple[FailedRun, ...]
    overview: Figure | None  # methods compared on each model
    fit: FitView | None  # None: no law was fitted
    notes: tuple[str, ...]  # the executor's notes (factors left out, nothing to fit)
    spec_yaml: str
