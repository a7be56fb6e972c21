"""Reading results tables and turning rows into seed-averaged points.

A table is CSV (header row), JSONL (one JSON object per line) or a JSON list of objects. JSON
objects that carry the run-result schema (`ftscale.results.SCHEMA`) are parsed by the contract
and flattened with `RunResult.row()`; failed runs are skipped and counted. Any other table with
named columns works too: `--x/--d/--loss` name the columns.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftscale.law.errors import LawInputError
from ftscale.results import SCHEMA, SUCCEEDED, ResultError, RunResult, result_from_dict


class LoadedTable(list):
    """A list of row dicts, plus how many failed runs were left out and where it came from."""

    def __init__(self, rows, *, skipped_failed: int = 0, source: str = ""):
        super().__init__(rows)
        self.skipped_failed = skipped_failed
        self.source = source


def load_table(path: str | Path) -> LoadedTable:
    """Read a CSV, JSONL or JSON-list results table into row dicts.

    Numbers in CSV cells become floats/ints; empty cells become None. Rows whose `outcome` is
    present and not "Succeeded" are skipped (count in `.skipped_failed`).
    Raises LawInputError (one line) when the file is missing, empty or unparsable.
    """
    p = Path(path)
    if not p.is_file():
        raise LawInputError(f"{p}: no such file; give the path of a CSV or JSONL results table")
    try:
        # utf-8-sig: a byte-order mark (Excel's "CSV UTF-8") would otherwise glue itself to the
        # first column's name
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise LawInputError(f"{p}: cannot read it as UTF-8 text ({exc}); "
                            "give a CSV or JSONL results table") from None
    if not text.strip():
        raise LawInputError(f"{p}: the file is empty; give a results table with a header row "
                            "(CSV) or one JSON object per line (JSONL)")
    stripped = text.lstrip()
    if stripped.startswith("[") or stripped.startswith("{"):
        docs = _parse_json_docs(p, stripped)
        rows, skipped = rows_from_documents(docs, source=str(p))
    else:
        rows, skipped = _parse_csv(p, text)
    if not rows:
        raise LawInputError(f"{p}: no usable rows ({skipped} failed run(s) skipped); "
                            "the table needs succeeded runs with a loss")
    return LoadedTable(rows, skipped_failed=skipped, source=str(p))


def _parse_json_docs(p: Path, text: str) -> list:
    if text.startswith("["):
        try:
            docs = json.loads(text)
        except ValueError as exc:
            raise LawInputError(f"{p}: not valid JSON ({exc}); give a JSON list, JSONL or CSV"
                                ) from None
        if not isinstance(docs, list):
            raise LawInputError(f"{p}: expected a JSON list of objects")
        return docs
    docs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            docs.append(json.loads(line))
        except ValueError as exc:
            raise LawInputError(f"{p}:{lineno}: not a JSON object ({exc.msg}); JSONL needs one "
                                "complete JSON object per line") from None
    return docs


def parse_run_result(doc: Mapping, where: str) -> RunResult:
    """A run-result document checked against the contract; LawInputError naming `where` if not."""
    try:
        return result_from_dict(doc)
    except ResultError as exc:
        raise LawInputError(f"{where} is not a valid run result ({exc}); fix or remove it") \
            from None


def rows_from_documents(docs: Sequence, source: str = "input") -> tuple[list[dict], int]:
    """Rows from parsed JSON objects (run results or plain rows); returns (rows, n_failed)."""
    rows, skipped = [], 0
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise LawInputError(f"{source}: entry {i} is {type(doc).__name__}, not an object; "
                                "each line/entry must be a JSON object")
        if doc.get("schema") == SCHEMA:
            result = parse_run_result(doc, f"{source}: entry {i}")
            if not result.ok:
                skipped += 1
                continue
            rows.append(result.row())
        else:
            if "outcome" in doc and doc["outcome"] not in (None, SUCCEEDED):
                skipped += 1
                continue
            rows.append(dict(doc))
    return rows, skipped


def _parse_csv(p: Path, text: str) -> tuple[list[dict], int]:
    try:
        dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(text.splitlines(), dialect=dialect)
    if not reader.fieldnames or len(reader.fieldnames) < 2:
        raise LawInputError(f"{p}: no header row with at least two columns; the first line of "
                            "a CSV table names its columns (e.g. model_params,data_size,test_loss)")
    rows, skipped = [], 0
    for lineno, raw in enumerate(reader, 2):
        if None in raw:
            raise LawInputError(f"{p}:{lineno}: more cells than header columns; fix that line")
        row = {k: _cell(v) for k, v in raw.items()}
        if row.get("outcome") not in (None, SUCCEEDED):
            skipped += 1
            continue
        rows.append(row)
    return rows, skipped


def _cell(value: str | None):
    if value is None:
        return None
    s = value.strip()
    if s == "":
        return None
    try:
        as_int = int(s)
        return as_int
    except ValueError:
        pass
    try:
        return float(s)
    except ValueError:
        return s


# ---- rows -> points ------------------------------------------------------------------------

@dataclass(frozen=True)
class RunArrays:
    """Per-run numbers of one table after validation: X, D, loss, and a run key per row."""

    x: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    keys: tuple[str, ...]


def run_arrays(rows: Sequence[Mapping], x: str | None, d: str, loss: str,
               what: str = "table") -> RunArrays:
    """Validate and extract the columns. x None means "no X" (the single-variable law)."""
    if not rows:
        raise LawInputError(f"{what}: no rows to fit; the table needs succeeded runs")
    columns = set().union(*(r.keys() for r in rows))
    for role, col in (("--x", x), ("--d", d), ("--loss", loss)):
        if col is not None and col not in columns:
            known = ", ".join(sorted(columns)[:12])
            raise LawInputError(f"{what}: no column {col!r} (for {role}); the table has: {known}; "
                                f"name the right one with {role} COL")
    xs = _column(rows, x, "X", what, "--x") if x is not None else np.ones(len(rows))
    ds = _column(rows, d, "data size", what, "--d")
    ls = _column(rows, loss, "loss", what, "--loss")
    keys = tuple(_run_key(r) for r in rows)
    return RunArrays(xs, ds, ls, keys)


def _column(rows, col, label, what, flag) -> np.ndarray:
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        value = row.get(col)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise LawInputError(f"{what}: row {i + 1} has {col}={value!r}, not a number; every "
                                f"row needs a numeric {label} (drop the row or fix {flag})")
        if not math.isfinite(value):
            raise LawInputError(f"{what}: row {i + 1} has {col}={value!r} (not finite); remove "
                                "NaN/inf rows (failed runs) before fitting")
        if value <= 0:
            raise LawInputError(f"{what}: row {i + 1} has {col}={value!r}; {label} must be > 0 "
                                "for a power law (log scale) — remove the row or pick the column "
                                "with the right units")
        out[i] = float(value)
    return out


def _run_key(row: Mapping) -> str:
    rid = row.get("run_id")
    if rid:
        return str(rid)
    return json.dumps(row, sort_keys=True, default=str)


@dataclass(frozen=True)
class PointSet:
    """Seed-averaged points (unique (X, D)) of one table, and which run belongs to which point.

    run_point[r] is the point index of run r; n_runs[p] is how many runs point p averages.
    """

    x: np.ndarray
    d: np.ndarray
    y: np.ndarray
    n_runs: np.ndarray
    run_point: np.ndarray
    run_loss: np.ndarray
    run_keys: tuple[str, ...]

    @property
    def size(self) -> int:
        return int(self.x.size)


def average_seeds(runs: RunArrays) -> PointSet:
    """Mean loss per unique (X, D), as the paper averages its three seeds per condition."""
    pairs = np.stack([runs.x, runs.d], axis=1)
    uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.bincount(inverse, minlength=len(uniq))
    sums = np.bincount(inverse, weights=runs.loss, minlength=len(uniq))
    return PointSet(uniq[:, 0], uniq[:, 1], sums / counts, counts.astype(float), inverse,
                    runs.loss, runs.keys)
