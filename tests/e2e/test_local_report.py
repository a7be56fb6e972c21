"""`ftscale run` to the end and `ftscale report`: the report's contents, fit.json, plots, the
re-render, failed runs, and the Prometheus endpoint — with the stand-in trainer, whose planted
law (β_fmt = 0.25, E = 1.5, α = 0.3) the fit must recover."""

from __future__ import annotations

import io
import json
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest

from ftscale.api.fit_summary import FitSummary
from ftscale.local.metrics import LocalMetrics
from ftscale.local.study_run import rerender, run_study
from ftscale.results import RunResult

from producers import example_fit_message

FAKE = Path(__file__).with_name("local_fake_trainer.py")

STUDY = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "rep"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": f"m{i}", "source": f"toy:m{i}"} for i in (1, 2, 3, 4)],
        "methods": [{"name": "fmt"}, {"name": "prompt", "sizes": [8]}],
        "dataSizes": [100, 200, 400, 800, 1600],
        "evaluation": {"generation": {"metrics": ["bleu"]}},
        "law": {"bootstrap": 10},
        "execution": {"maxParallelRuns": 2, "backoffLimit": 0},
    },
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {FAKE}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    return tmp_path


def run(study: Path, workdir: Path, **kw) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_study(str(study), workdir=str(workdir), out=out, err=err, **kw)
    return code, out.getvalue() + err.getvalue()


def sections(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("## ")]


@pytest.mark.slow
def test_report_has_results_laws_comparison_critical_sizes_findings_and_plots(env):
    code, text = run(env / "study.yaml", env / "wd")
    assert code == 0, text
    report = (env / "wd" / "report.md").read_text()
    assert f"report: {(env / 'wd' / 'report.md').resolve()}" in text
    assert sections(report) == [
        "## Results: test loss (nats/token)", "## Plots", "## Fitted scaling laws",
        "## Multiplicative vs additive (mean absolute deviation on held-out runs)",
        "## Critical data sizes", "## Findings", "## Files"]
    assert "40 in the grid, 40 succeeded, 0 failed" in report
    # the results table: one row per (model, method), one column per data size
    assert "| m1 | 1e+04 | fmt | 2.296 |" in report
    assert "| m4 | 6.4e+05 | prompt (len=8) |" in report
    assert "### bleu" in report
    assert "| fmt | model_size | multiplicative |" in report
    assert "| prompt | model_size | additive |" in report
    assert "finetuning data helps most for fmt" in report
    # fit.json is the law engine's contract, and recovers the planted law
    fit = json.loads((env / "wd" / "fit.json").read_text())
    assert fit["schema"] == "ftscale.io/fit-result/v1"
    law = next(l for l in fit["laws"] if l["method"] == "fmt" and l["form"] == "multiplicative")
    assert law["beta"] == pytest.approx(0.25, abs=0.02)
    assert law["E"] == pytest.approx(1.5, abs=0.05)
    assert law["alpha"] == pytest.approx(0.3, abs=0.03)
    assert law["convergence"]["converged"] is True
    # every plot the report shows exists and is a PNG
    for name in [line[line.index("(") + 1:-1] for line in report.splitlines()
                 if line.startswith("![")]:
        assert (env / "wd" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    assert (env / "wd" / "plots" / "methods_per_model.png").exists()

    # `ftscale report DIR` re-renders from the workdir, with edited law settings
    recorded = yaml.safe_load((env / "wd" / "study.yaml").read_text())
    recorded["spec"]["law"]["forms"] = ["multiplicative"]
    recorded["spec"]["law"]["bootstrap"] = 0
    (env / "wd" / "study.yaml").write_text(yaml.safe_dump(recorded))
    (env / "wd" / "report.md").unlink()
    out = io.StringIO()
    assert rerender(str(env / "wd"), out=out, err=out) == 0, out.getvalue()
    again = (env / "wd" / "report.md").read_text()
    assert "| fmt | model_size | multiplicative |" in again
    assert "| fmt | model_size | additive |" not in again
    assert "Brackets: none (bootstrap off)" in again


@pytest.mark.slow
def test_failed_runs_are_listed_and_the_rest_is_fitted(env, monkeypatch):
    from ftscale import grid
    from ftscale.spec import load_study
    runs = grid.expand(load_study(env / "study.yaml").spec)
    broken = [r for r in runs if r.key.method == "prompt" and r.key.data_size == 100]
    monkeypatch.setenv("FAKE_FAIL", ",".join(r.run_id for r in broken))
    code, text = run(env / "study.yaml", env / "wd")
    assert code == 1
    report = (env / "wd" / "report.md").read_text()
    assert "36 succeeded, 4 failed" in report
    assert "### Failed runs" in report and report.count("| RuntimeError |") == 4
    assert "| prompt | model_size | multiplicative |" in report


def test_rerender_of_a_non_workdir_says_what_to_do(tmp_path):
    out = io.StringIO()
    assert rerender(str(tmp_path), out=out, err=out) == 2
    assert "is not a workdir of `ftscale run`" in out.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_metrics_are_served_while_running(env, monkeypatch):
    monkeypatch.setenv("FAKE_SLEEP", "0.3")
    port = _free_port()
    scraped: list[str] = []

    def scrape():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not scraped:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                text = body.read().decode()
                if 'phase="Running"' in text:
                    scraped.append(text)
            except OSError:
                time.sleep(0.05)

    thread = threading.Thread(target=scrape)
    thread.start()
    small = env / "small.yaml"
    doc = json.loads(json.dumps(STUDY))
    doc["spec"].update(methods=[{"name": "fmt"}], dataSizes=[100, 200])
    small.write_text(yaml.safe_dump(doc))
    code, text = run(small, env / "wd", metrics_port=port, fit=False)
    thread.join()
    assert code == 0, text
    assert scraped, "no scrape while the study was running"
    body = scraped[0]
    assert 'ftscale_study_runs_expected{namespace="local",study="rep"} 8.0' in body
    assert 'ftscale_study_runs{namespace="local",phase="Running",study="rep"}' in body


def test_local_metrics_from_the_catalogue():
    m = LocalMetrics("s")
    m.set_counts({"Running": 2, "Succeeded": 3}, 10)
    ok = RunResult(study="s", run_id="a", model="m1", method="lora", pet_size=4, data_size=100,
                   seed=0, test_loss=2.5)
    bad = RunResult(study="s", run_id="b", model="m1", method="fmt", pet_size=None,
                    data_size=100, seed=0, outcome="Failed", reason="OOMKilled")
    m.run_finished(ok)
    m.run_finished(bad)
    summary = FitSummary.parse(example_fit_message())
    m.fit_done(summary)
    text = generate_latest(m.registry).decode()
    assert 'ftscale_study_runs{namespace="local",phase="Running",study="s"} 2.0' in text
    assert ('ftscale_run_test_loss{data_size="100",method="lora",model="m1",namespace="local",'
            'pet_size="4",study="s"} 2.5') in text
    assert 'ftscale_run_failures_total{namespace="local",reason="OOMKilled",study="s"} 1.0' in text
    assert 'ftscale_study_fitted{namespace="local",study="s"} 1.0' in text
    beta = next(law.params["beta"] for law in summary.laws
                if law.method == "fmt" and law.form == "multiplicative")
    assert ('ftscale_fit_parameter{factor="model_size",form="multiplicative",method="fmt",'
            f'namespace="local",parameter="beta",study="s"}} {beta}') in text
