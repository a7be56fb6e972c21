"""benchmarks/bench_trainer_gpu.py runs on CPU (--device cpu --tiny) so it cannot rot, and its
FLOP accounting (documented in its docstring) holds: PET counts no weight gradients of the base."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_trainer_gpu.py"
NUM = r"[0-9.]+"
LAST_LINE = re.compile(
    rf"^gpu_tokens_per_second_fmt={NUM} gpu_tokens_per_second_lora={NUM} gpu_mfu_lora={NUM} "
    rf"gpu_tokens_per_second_prompt={NUM} gpu_mfu_prompt={NUM} gpu_mfu_fmt=(?P<f>{NUM})$")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_trainer_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("flag", [["--device", "cpu", "--tiny"], ["--smoke-cpu"]])
def test_runs_on_cpu_with_one_line_per_method(flag):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "operator"), str(ROOT / "trainer_image")]),
               OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(SCRIPT), *flag], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    for method in ("fmt", "lora (r=16)", "prompt (100 virtual tokens)"):
        rows = [line for line in lines if line.startswith(method + ":")]
        assert len(rows) == 1, proc.stdout
        assert "tokens/s" in rows[0] and "peak memory" in rows[0] and "MFU" in rows[0]
    match = LAST_LINE.match(lines[-1])
    assert match, lines[-1]
    assert float(match["f"]) > 0


def test_pet_flops_drop_base_weight_gradients():
    bench = _bench()
    n, head, layers, d, seq = 1000, 200, 2, 16, 64
    attn = 12 * layers * d * seq
    assert bench.model_flops_per_token(n, head, layers, d, seq, "fmt") == 6 * (n + head) + attn
    assert bench.model_flops_per_token(n, head, layers, d, seq, "lora", trainable_lora=50) == \
        4 * (n + head) + attn + 6 * 50
    # prompt: decoder and attention over seq + P positions per real token; head on real ones only
    ctx = seq + 32
    assert bench.model_flops_per_token(n, head, layers, d, seq, "prompt", prompt_len=32) == \
        pytest.approx((4 * n + 12 * layers * d * ctx) * ctx / seq + 4 * head)


def test_result_line_ends_in_fmt_mfu():
    line = _bench().result_line({"fmt": (1000.0, 0.5), "lora": (2000.0, 0.4), "prompt": (1500.0, 0.3)})
    assert LAST_LINE.match(line) and line.endswith("gpu_mfu_fmt=0.500")
