"""One run on two "nodes", on CPU: two torchrun launchers of one process each, started with the
command line the operator renders for every pod of a multi-node run (run_contract.launcher),
meet through torchrun's c10d rendezvous on 127.0.0.1 (gloo) and train the mini world as one
data-parallel group. Global rank 0 alone writes the result and the termination message; the
other "pod" exits 0 with an empty message — what the operator's harvest expects
(docs/trainer.md, "Several nodes")."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import PYTHONPATH, base_config

from ftscale.api import run_contract
from ftscale.results import parse_result

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_meet_through_c10d_and_rank_0_alone_reports(mini_world, tmp_path):
    config = base_config(mini_world, method="lora", max_steps=4, eval_interval=2,
                         dev_examples=32, test_examples=32)
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    launch = run_contract.launcher(None, 1, nodes=2, rdzv_endpoint=f"127.0.0.1:{_free_port()}",
                                   rdzv_id="t-multinode")
    assert launch[:5] == ["python", "-m", "ftscale_trainer.launch", "torchrun", "--nnodes=2"]
    # `python` is this venv's interpreter, as in the image; `torchrun` is
    # `python -m torch.distributed.run`, whatever PATH holds.
    argv = run_contract.trainer_argv(
        [sys.executable, "-m", "ftscale_trainer.launch",
         sys.executable, "-m", "torch.distributed.run", *launch[4:]],
        str(cfg), str(tmp_path / "out"))
    procs = []
    for node in (0, 1):
        # Each "pod" has its own termination-message file; the output folder is shared, as a
        # ReadWriteMany results volume is on a cluster.
        env = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1",
                   TERMINATION_MESSAGE_PATH=str(tmp_path / f"termination-{node}"))
        env.pop("FTSCALE_ACCELERATE", None)
        procs.append(subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        logs = [p.communicate(timeout=600)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    messages = []
    for node in (0, 1):
        path = tmp_path / f"termination-{node}"
        messages.append(path.read_text() if path.exists() else "")
    written = [m for m in messages if m.strip()]
    assert len(written) == 1, messages  # global rank 0 only; the other node stays silent
    result = parse_result(written[0])
    assert result.ok and result.steps == 4 and result.test_loss is not None
    # one data-parallel group across both launchers, not two single-process runs
    full = json.loads((tmp_path / "out" / "result.json").read_text())
    assert full["device"] == "cpu x2 processes"
    assert full["test_loss"] == pytest.approx(result.test_loss)
