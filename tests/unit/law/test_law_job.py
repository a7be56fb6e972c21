"""The fit-Job entry point and the study outputs (fit.json, summary, markdown, plots)."""

import json

import numpy as np
import pytest

from ftscale.api.fit_summary import FitSummary
from ftscale.identity import RunKey
from ftscale.law.job import main
from ftscale.law.synthetic import X_COLUMN, factor_rows
from ftscale.results import RunResult


def _input_doc():
    rng = np.random.default_rng(4)
    results, factors = {}, {}
    for method in ("fmt", "lora"):
        factors[method] = []
        for factor in ("model_size", "pretrain_tokens") + (("pet_size",) if method == "lora"
                                                           else ()):
            ids = []
            for r in factor_rows(method, factor, rng=rng, seeds=1):
                key = RunKey(f"{r['model']}@{r['pretrain_tokens']}", method, r["pet_size"],
                             r["data_size"], r["seed"])
                results[key.run_id] = RunResult(
                    study="s", run_id=key.run_id, model=key.model, method=method,
                    pet_size=r["pet_size"], data_size=r["data_size"], seed=0,
                    model_params=r["model_params"], pretrain_tokens=r["pretrain_tokens"],
                    test_loss=r["test_loss"])
                ids.append(key.run_id)
            factors[method].append({"factor": factor, "x_column": X_COLUMN[factor],
                                    "run_ids": ids})
    docs = [json.loads(r.to_compact_json()) for r in results.values()]
    docs.append(json.loads(RunResult(study="s", run_id="dead", model="1B", method="fmt",
                                     pet_size=None, data_size=5, seed=0, outcome="Failed",
                                     reason="OOMKilled").to_compact_json()))
    return {"study": "s", "law": {"bootstrap": 10, "seed": 1,
                                  "heldOut": {"factors": {"pretrain_tokens": {"x": [209e9]}}}},
            "factors": factors, "results": docs}


@pytest.mark.slow
def test_job_writes_fit_summary_and_plots(tmp_path, monkeypatch):
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(_input_doc()))
    term = tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(term))
    assert main(["--input", str(inp), "--output", str(tmp_path / "out")]) == 0
    fit = json.loads((tmp_path / "out" / "fit.json").read_text())
    assert fit["schema"] == "ftscale.io/fit-result/v1"
    assert fit["input_counts"]["failed_runs_skipped"] == 1
    keys = {(l["method"], l["factor"], l["form"]) for l in fit["laws"]}
    assert ("lora", "pet_size", "multiplicative") in keys and ("fmt", "model_size", "additive") in keys
    law = next(l for l in fit["laws"] if l["method"] == "fmt" and l["form"] == "multiplicative")
    assert {"A", "E", "alpha", "beta", "intervals", "delta_fit", "delta_heldout",
            "convergence", "stage1_convergence"} <= set(law)
    assert fit["critical_data_sizes"] and fit["form_comparison"]["per_factor"]
    summary = term.read_text()
    assert len(summary.encode()) < 3000
    s = FitSummary.parse(summary)
    fmt = next(x for x in s.laws if (x.method, x.factor, x.form) == ("fmt", "model_size",
                                                                      "multiplicative"))
    assert fmt.params["A"] == pytest.approx(law["A"], rel=1e-9)
    md = (tmp_path / "out" / "fit.md").read_text()
    for heading in ("## Fitted scaling laws", "## Multiplicative vs additive",
                    "## Critical data sizes", "## Findings"):
        assert heading in md
    assert list((tmp_path / "out" / "plots").glob("critical_*.png"))


def test_job_bad_input_exit_2(tmp_path, monkeypatch, capsys):
    doc = _input_doc()
    doc["law"]["huberDelta"] = -1
    inp = tmp_path / "in.json"
    inp.write_text(json.dumps(doc))
    term = tmp_path / "term"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(term))
    assert main(["--input", str(inp), "--output", str(tmp_path / "o")]) == 2
    assert "delta" in term.read_text()
