"""Data parallelism in one pod: two processes under torchrun (accelerate's process group, gloo
on CPU) split each global batch and must end where one process ends — the loss is normalised by
the global batch's target tokens and evaluation sums over ranks. SIGTERM to the launcher (what
Kubernetes sends the pod's first process) reaches every rank, and they stop at the same step."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import PYTHONPATH, base_config, run_trainer

from ftscale.results import INTERRUPTED

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


def _torchrun(config, tmp_path, name, *extra, env_extra=None):
    cfg = tmp_path / f"{name}.json"
    cfg.write_text(json.dumps(config))
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1", **(env_extra or {}))
    env.pop("FTSCALE_ACCELERATE", None)
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "-m", "ftscale_trainer", "--config", str(cfg), "--output", str(tmp_path / name), *extra], env


def test_two_processes_with_micro_batches_match_one_on_the_hf_path(mini_world, hf_checkpoints, tmp_path):
    # Prompt tuning on GPT-NeoX through transformers + peft; each rank's 4 examples run as two
    # micro-batches of 2 (DDP's no_sync for the first), the single process's 8 in one pass.
    config = base_config(mini_world, model_source=str(hf_checkpoints["gpt_neox"]), backend="hf",
                         method="prompt", pet_size=4, learning_rate=0.3, max_steps=4,
                         eval_interval=2, dev_examples=32, test_examples=32)
    (tmp_path / "one").mkdir()
    _, single, _ = run_trainer(tmp_path / "one", config)
    cmd, env = _torchrun(dict(config, micro_batch_size=2), tmp_path, "dp")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    dp = json.loads((tmp_path / "dp" / "result.json").read_text())
    assert dp["device"] == "cpu x2 processes" and dp["config"]["micro_batch_size"] == 2
    assert [s for s, _ in dp["curves"]["train"]] == [s for s, _ in single["curves"]["train"]]
    for (_, a), (_, b) in zip(dp["curves"]["train"], single["curves"]["train"]):
        assert a == pytest.approx(b, abs=1e-4)
    assert dp["test_loss"] == pytest.approx(single["test_loss"], abs=1e-4)
    # Rank 0 alone saved the adapter, in peft's layout.
    assert (tmp_path / "dp" / "adapter" / "adapter_model.safetensors").exists()


def test_sigterm_to_the_launcher_stops_every_rank_at_the_same_step(mini_world, tmp_path):
    config = base_config(mini_world, method="lora", max_steps=400, eval_interval=100,
                         log_interval=1, data_size=400)
    term = tmp_path / "termination-log"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd, env = _torchrun(config, tmp_path, "out", "--metrics-port", str(port),
                         env_extra={"TERMINATION_MESSAGE_PATH": str(term)})
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:  # rank 0 serves the step it is at
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            text = ""
        steps = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
                 if l.startswith("ftscale_trainer_step")]
        if steps and steps[0] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # to the launcher, as the kubelet signals PID 1
    _, log = proc.communicate(timeout=120)
    stops = re.findall(r"stopped by a signal at step (\d+) of 400", log)
    assert len(stops) == 2 and len(set(stops)) == 1, log[-3000:]
    step = int(stops[0])
    assert 0 < step < 400
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["reason"] == INTERRUPTED and json.loads(term.read_text())["reason"] == INTERRUPTED
    state = json.loads((tmp_path / "out" / "checkpoint" / "state.json").read_text())
    assert state["progress"]["step"] == step
    # The same command resumes from that step on both ranks and finishes.
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count(f"resuming from step {step}") == 2
    assert json.loads((tmp_path / "out" / "result.json").read_text())["steps"] == 400
