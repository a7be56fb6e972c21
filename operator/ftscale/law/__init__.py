"""Scaling-law engine (torch-free: numpy + scipy) for L̂(X, D_f) = A·X^−α·D_f^−β + E.

The math and the reasons behind each choice are in docs/law.md. Interfaces:

Tables
    load_table(path) -> LoadedTable (a list of row dicts; `.skipped_failed` counts failed runs
        left out). CSV, JSONL or a JSON list; run-result documents (ftscale.results) are parsed
        by the contract and flattened with RunResult.row().

One table, one form (`ftscale fit`)
    fit_law(rows, form=, x=, d=, loss=, residual=, delta=, holdout=, bootstrap=, seed=, ...)
        -> list[FittedLaw]   (one per joint fit; one per X value for the single-variable law)
    FittedLaw: .params (LawParams: A, B, E, alpha, beta, unrounded, .predict(x, d)),
        .intervals, .delta_fit, .delta_heldout, .convergence, .points, .to_dict()

The study protocol (`ftscale run`, the operator's fit Job)
    fit_study(factors_by_method: dict[str, list[FactorRows]], options: LawOptions) -> StudyFit
    FactorRows(factor, x_column, rows): factor in model_size | pretrain_tokens | pet_size with
        x_column model_params | pretrain_tokens | pet_size; rows follow RunResult.row()
        (data_size and test_loss are read from them).
    LawOptions.from_spec(spec_law_dict): camelCase keys forms, residual, huberDelta, heldOut,
        bootstrap, seed, stage1Factors, confidenceLevel, optimizer (ftscale.law.options).
    StudyFit.to_dict() -> the fit-result JSON (schema ftscale.io/fit-result/v1);
    StudyFit.to_summary() / .summary_json() -> compact (< 3 KB) summary for a termination
        message (schema ftscale.io/fit-summary/v1).
    plot_study(study_fit, outdir) -> list[Path];  render_markdown(study_fit) -> str.
    Fit Job: python -m ftscale.law.job --input fit-input.json --output DIR (ftscale.law.job).

The rectified law of Lin et al. (one model: L = (B/(D_l + D^β) + E)^α; docs/law.md §10)
    fit_law(rows, form="rectified") -> [FittedLaw];  ftscale.law.rectified.fit_compared (with
    the power law beside it) and rank_models (choosing a checkpoint from subset runs).

Predictions from a finished fit (`ftscale predict` / `recommend`; docs/law.md §11)
    ftscale.law.predict: load_fit(path) / read_study_fit("ns/name") -> [LawEntry];
    predict(entry, x, d), recommend(entries, x, d). fit.json keeps every law's bootstrap
    replicates (FittedLaw.to_dict: replicate_columns, replicates) for their intervals.

Errors: LawInputError (bad table/options; one-line message naming the fix) vs FitError
(valid input that cannot be fitted).
"""

from ftscale.law.critical import crossings, eq3
from ftscale.law.errors import FitError, LawInputError
from ftscale.law.fit import FittedLaw, LawParams, fit_law
from ftscale.law.markdown import render_markdown
from ftscale.law.options import HoldoutSpec, LawOptions
from ftscale.law.plots import plot_study
from ftscale.law.study import FactorRows, StudyFit, fit_study
from ftscale.law.table import LoadedTable, load_table

__all__ = [
    "FactorRows", "FitError", "FittedLaw", "HoldoutSpec", "LawInputError", "LawOptions",
    "LawParams", "LoadedTable", "StudyFit", "crossings", "eq3", "fit_law", "fit_study",
    "load_table", "plot_study", "render_markdown",
]
