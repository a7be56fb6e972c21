"""Preemption and live metrics through the real entry point: SIGTERM mid-run saves a checkpoint
and exits 143; the same command resumes and ends with the uninterrupted run's result. While it
trains, the Prometheus endpoint serves the catalogue's trainer metrics."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import PYTHONPATH, base_config, run_trainer

from ftscale.metric_names import BY_NAME
from ftscale.results import INTERRUPTED

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("ftscale_trainer_"):
            name = line.split("{", 1)[0]
            values[name] = float(line.rsplit(" ", 1)[1])
    return values


def test_sigterm_checkpoints_and_rerun_resumes_to_the_same_result(mini_world, tmp_path):
    config = base_config(mini_world, method="lora", max_steps=300, eval_interval=50, batch_size=8,
                         data_size=400, log_interval=1)
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    out, term = tmp_path / "out", tmp_path / "term"
    port = _free_port()
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, TERMINATION_MESSAGE_PATH=str(term),
               OMP_NUM_THREADS="1", FTSCALE_ACCELERATE="0")
    cmd = [sys.executable, "-m", "ftscale_trainer", "--config", str(cfg), "--output", str(out),
           "--metrics-port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    scraped = {}
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        try:
            scraped = _scrape(port)
        except OSError:
            scraped = {}
        if scraped.get("ftscale_trainer_step", 0) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr[-2000:]
    # Live metrics: every name comes from the catalogue.
    assert set(scraped) <= {m if BY_NAME[m].kind != "counter" else m for m in BY_NAME} | {
        "ftscale_trainer_tokens_seen_total", "ftscale_trainer_tokens_seen_created"}
    assert scraped["ftscale_trainer_step"] >= 2
    assert scraped["ftscale_trainer_tokens_seen_total"] > 0
    assert "ftscale_trainer_learning_rate" in scraped and "ftscale_trainer_train_loss" in scraped
    message = json.loads(term.read_text())
    assert message["outcome"] == "Failed" and message["reason"] == INTERRUPTED
    assert (out / "checkpoint" / "state.json").exists()
    stopped_at = int(stderr.split("checkpoint saved at step ")[1].split()[0])
    assert 2 <= stopped_at < 300

    resumed = subprocess.run(cmd[:-2], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from step {stopped_at}" in resumed.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["steps"] == 300

    (tmp_path / "straight").mkdir()
    _, straight, _ = run_trainer(tmp_path / "straight", config)
    assert result["tokens_seen"] == straight["tokens_seen"]
    assert result["best_step"] == straight["best_step"]
    assert result["test_loss"] == pytest.approx(straight["test_loss"], abs=1e-6)
    assert result["wall_seconds"] > 0
