"""The adaptive design end to end: a small version of examples/adaptive-study.yaml (the tiny
world, FMT and LoRA, a few steps per run) through `ftscale run` with the real trainer — it
starts the seed design and what the design chooses, fewer runs than the grid, exits 0 with the
rest not needed, records why each run was chosen (console, design.jsonl, report.md), and the
report fits the runs it made. Needs the cached toy world (`ftscale toy build`; built here if
missing, which takes minutes)."""

from __future__ import annotations

import json
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


def small_study(tmp_path: Path) -> tuple[Path, int]:
    """The example with two methods and short runs; its design as shipped but for a stop rule
    that the seed design's fit meets. Returns the file and the grid's size."""
    doc = yaml.safe_load((ROOT / "examples" / "adaptive-study.yaml").read_text())
    spec = doc["spec"]
    assert spec["design"]["strategy"] == "adaptive"
    spec["methods"] = [m for m in spec["methods"] if m["name"] in ("fmt", "lora")]
    spec["training"] = {"maxSteps": 6, "evalInterval": 3, "batchSize": 8, "warmupSteps": 1}
    spec["evaluation"].update(devExamples=24, testExamples=48)
    spec["law"]["bootstrap"] = 0
    spec["design"]["stopWhen"] = {"halfWidth": 5.0}
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, len(spec["models"]) * len(spec["methods"]) * len(spec["dataSizes"])


def test_small_adaptive_study_starts_fewer_runs_and_records_why(toy_world, tmp_path):
    study, grid_size = small_study(tmp_path)
    workdir = tmp_path / "work"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}",
               CUDA_VISIBLE_DEVICES="")
    env.pop("FTSCALE_TRAINER_CMD", None)
    done = subprocess.run([sys.executable, "-m", "ftscale", "run", str(study), "--workdir",
                           str(workdir), "--parallel", "2"],
                          env=env, capture_output=True, text=True, timeout=900)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]

    results = [json.loads(line) for line in (workdir / "results.jsonl").read_text().splitlines()]
    assert all(r["outcome"] == "Succeeded" for r in results)
    assert 10 <= len(results) < grid_size  # at least the seed design (5 per method)
    log = [json.loads(line) for line in (workdir / "design.jsonl").read_text().splitlines()]
    chose = {d["run_id"]: d["reason"] for d in log if d["event"] == "chose"}
    assert set(chose) == {r["run_id"] for r in results}
    assert sum(reason.startswith("seed design") for reason in chose.values()) == 10
    assert log[-1]["event"] == "done" and log[-1]["stopped"].startswith("target met")
    assert len(log[-1]["not_needed"]) == grid_size - len(results)
    assert f"{grid_size - len(results)} run(s) not needed" in text
    assert text.count("  chose ") == len(results)

    report = (workdir / "report.md").read_text()
    assert "## Adaptive design" in report
    fit = json.loads((workdir / "fit.json").read_text())
    assert {law["method"] for law in fit["laws"]} >= {"fmt", "lora"}
