"""Fit-Job entry point: `python -m ftscale.law.job --input results.json --output DIR`.

Input document (JSON; the operator puts it gzip-compressed in a ConfigMap —
ftscale.api.fit_input — and `ftscale run` as plain JSON in its workdir; both are read):

    {
      "study":   "my-study",                       # name, for messages only
      "law":     {...},                            # spec.law (LawOptions.from_spec keys)
      "factors": {"fmt": [{"factor": "model_size", "x_column": "model_params",
                           "run_ids": ["abc...", ...]}, ...], "lora": [...]},
      "results": [<run-result documents, compact or full>]
    }

A run may be listed under several factors. Failed results and run ids without a result are
skipped and counted. A factor whose runs cannot determine its law is skipped with the reason
(ftscale.law.study: the one rule, the same under `ftscale run`). Output: DIR/fit.json (the full
fit result), DIR/fit.md (report sections), DIR/*.png (plots); the fit summary
(ftscale.api.fit_summary.FitSummary, < 3 KB) goes to the termination-message path
(ftscale.api.outcomes) and to stdout. Exit codes (ftscale.api.outcomes): 0 fitted, 2 bad input
or nothing that can be fitted (the message says what to fix), 1 the fit itself failed.
Torch-free.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ftscale.api import fit_input
from ftscale.api.outcomes import (EXIT_INVALID_CONFIG, EXIT_OK, EXIT_RUNTIME_ERROR,
                                  write_termination_message)
from ftscale.law.errors import FitError, LawInputError
from ftscale.law.markdown import render_markdown
from ftscale.law.options import LawOptions
from ftscale.law.plots import plot_study
from ftscale.law.study import FactorRows, StudyFit, fit_study, json_safe
from ftscale.law.table import parse_run_result


def build_factors(doc: dict) -> tuple[dict[str, list[FactorRows]], dict]:
    """Factor tables from an input document; returns (factors_by_method, counts)."""
    if not isinstance(doc, dict):
        raise LawInputError("the input must be a JSON object with law, factors and results")
    results = doc.get("results")
    factors = doc.get("factors")
    if not isinstance(results, list):
        raise LawInputError("input has no 'results' list; put the run-result documents there")
    if not isinstance(factors, dict) or not factors:
        raise LawInputError("input has no 'factors' object; map each method to its factor "
                            "tables: {method: [{factor, x_column, run_ids}]}")
    rows_by_id, failed = {}, 0
    for i, item in enumerate(results, 1):
        result = parse_run_result(item, f"results[{i}]")
        if not result.ok:
            failed += 1
            continue
        rows_by_id[result.run_id] = result.row()
    out, missing = {}, 0
    for method, tables in factors.items():
        out[method] = []
        for t in tables:
            try:
                ids = t["run_ids"]
                rows = [rows_by_id[r] for r in ids if r in rows_by_id]
                missing += sum(r not in rows_by_id for r in ids)
                out[method].append(FactorRows(t["factor"], t["x_column"], rows))
            except (KeyError, TypeError):
                raise LawInputError(f"factors.{method}: each entry needs factor, x_column and "
                                    "run_ids") from None
    return out, {"failed_runs_skipped": failed, "runs_without_result": missing}


def fit_document(doc: dict, progress=None) -> tuple[StudyFit, dict]:
    """A fit input document → (the study fit, input counts). The one function the fit Job and
    `ftscale run` call. Raises LawInputError (bad input, or no factor can be fitted) or
    FitError."""
    options = LawOptions.from_spec(doc.get("law") if isinstance(doc, dict) else None)
    factors, counts = build_factors(doc)
    return fit_study(factors, options, progress=progress), counts


def run(input_path: Path, output: Path) -> int:
    try:
        doc = fit_input.decode(input_path.read_bytes())  # gzip'd (the fit Job's) or plain JSON
    except (OSError, ValueError) as exc:
        return _fail(EXIT_INVALID_CONFIG,
                     f"cannot read {input_path} as JSON ({exc}); give the fit input document")
    try:
        sf, counts = fit_document(doc)
    except LawInputError as exc:
        return _fail(EXIT_INVALID_CONFIG, str(exc))
    except FitError as exc:
        return _fail(EXIT_RUNTIME_ERROR, str(exc))
    output.mkdir(parents=True, exist_ok=True)
    full = sf.to_dict()
    full["study"] = doc.get("study")
    full["input_counts"] = counts
    (output / "fit.json").write_text(json.dumps(json_safe(full), indent=2, sort_keys=True,
                                               allow_nan=False))
    (output / "fit.md").write_text(render_markdown(sf))
    plot_study(sf, output / "plots")
    summary = sf.summary().to_json()
    problem = write_termination_message(summary)
    if problem:
        print(f"ftscale fit job: {problem}", file=sys.stderr)
    print(summary)
    return EXIT_OK


def _fail(code: int, message: str) -> int:
    """A failed fit: the message on stderr, which the Job's FallbackToLogsOnError policy
    turns into the termination message the operator reads as the reason."""
    print(f"ftscale fit job: {message}", file=sys.stderr)
    write_termination_message(f"ftscale fit job: {message}"[:2500])
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftscale.law.job",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="fit input document (JSON, or gzip-compressed JSON as the operator writes it)")
    parser.add_argument("--output", required=True, type=Path,
                        help="folder for fit.json, fit.md and plots/")
    args = parser.parse_args(argv)
    return run(args.input, args.output)


if __name__ == "__main__":
    sys.exit(main())
