"""Summarization end to end: a small version of examples/summarization-study.yaml (toy-sum:
English, German and French long → short Debian descriptions) through `ftscale run` with the
real trainer — every run succeeds with ROUGE-L carrying its sample size and interval, the
runs see the paper's summarization prompt, and the report says why a ROUGE-L table on a few
examples is left out. Needs the cached toy world (`ftscale toy build`; built here if missing,
which takes minutes)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def toy_world():
    pytest.importorskip("torch")
    from ftscale_trainer import toy

    return toy.build()


def small_study(tmp_path: Path) -> Path:
    """The example with fewer models, methods, data sizes and steps; everything else as shipped."""
    doc = yaml.safe_load((ROOT / "examples" / "summarization-study.yaml").read_text())
    spec = doc["spec"]
    assert spec["task"]["name"] == "toy-sum" and spec["evaluation"]["generation"]["metrics"] == ["rougeL"]
    spec["models"] = spec["models"][:2]
    spec["methods"] = [m for m in spec["methods"] if m["name"] in ("fmt", "lora")]
    spec["dataSizes"] = [50, 100]
    spec["training"] = {"maxSteps": 6, "evalInterval": 3, "batchSize": 8, "warmupSteps": 1}
    spec["evaluation"].update(devExamples=24, testExamples=48)
    spec["evaluation"]["generation"].update(maxExamples=12, maxNewTokens=12)
    spec["law"] = {"bootstrap": 0, "heldOut": {"x": "none", "d": "none"}}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_small_summarization_study_runs_with_rouge_l(toy_world, tmp_path):
    study = small_study(tmp_path)
    workdir = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}",
               CUDA_VISIBLE_DEVICES="")
    env.pop("FTSCALE_TRAINER_CMD", None)
    done = subprocess.run([sys.executable, "-m", "ftscale", "run", str(study), "--workdir",
                           str(workdir), "--parallel", "2"],
                          env=env, capture_output=True, text=True, timeout=900)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    assert "8 succeeded, 0 failed" in text

    results = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert len(results) == 8
    for r in results:
        assert r["outcome"] == "Succeeded" and math.isfinite(r["test_loss"]) and r["test_loss"] > 0
        g = r["generation"]
        assert 0 <= g["rougeL_ci_low"] <= g["rougeL"] <= g["rougeL_ci_high"] <= 1
        assert g["rougeL_n"] == 12
    # The config that ran (the full result keeps it): the paper's summarization prompt.
    ran = json.loads(next((workdir / "runs").glob("*/result.json")).read_text())["config"]
    assert ran["task"] == "toy-sum" and ran["template"] == "summarize"
    assert ran["max_source_tokens"] == 96 and ran["generation"] == ["rougeL"]
    log = "".join(p.read_text() for p in (workdir / "runs").glob("*/train.log"))
    assert "Traceback" not in log

    report = (workdir / "report.md").read_text()
    assert "task**: toy-sum" in report and "### rougeL" in report
    assert "Table left out: rougeL was computed on only 12 greedy outputs per run" in report
