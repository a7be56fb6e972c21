"""Data parallelism in one pod: two processes under torchrun (accelerate's process group, gloo
on CPU) split each global batch and must end where one process ends — the loss is normalised by
the global batch's target tokens and evaluation sums over ranks."""

import json
import os
import subprocess
import sys

import pytest
from conftest import PYTHONPATH, base_config, run_trainer

pytestmark = pytest.mark.slow


def test_two_processes_give_the_single_process_result(mini_world, tmp_path):
    config = base_config(mini_world, method="lora", max_steps=6, eval_interval=3)
    (tmp_path / "one").mkdir()
    _, single, _ = run_trainer(tmp_path / "one", config)
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1")
    env.pop("FTSCALE_ACCELERATE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "ftscale_trainer", "--config", str(cfg), "--output", str(tmp_path / "dp")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dp = json.loads((tmp_path / "dp" / "result.json").read_text())
    assert dp["device"] == "cpu x2 processes"
    assert dp["tokens_seen"] == single["tokens_seen"] and dp["steps"] == single["steps"]
    assert dp["test_loss"] == pytest.approx(single["test_loss"], abs=1e-4)
    assert dp["best_dev_loss"] == pytest.approx(single["best_dev_loss"], abs=1e-4)
