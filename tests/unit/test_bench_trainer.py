"""The pure parts of benchmarks/bench_trainer.py (`make bench-trainer`): its arguments, how the
best of N timings and the ratios are taken. The benchmark itself trains for minutes and is run
by hand (docs/trainer.md, "make bench-trainer")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_trainer as bt  # noqa: E402


def test_both_backends_and_methods_by_default():
    args = bt.parse_args([])
    assert args.backends == ["native", "hf"] and args.methods == ["fmt", "lora"]
    args = bt.parse_args(["--backends", "hf", "--methods", "lora", "--threads", "1"])
    assert args.backends == ["hf"] and args.methods == ["lora"] and args.threads == 1


@pytest.mark.parametrize("flag, value", [("--backends", "hf,deepspeed"), ("--methods", "prompt")])
def test_unknown_choices_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit) as exc:
        bt.parse_args([flag, value])
    assert exc.value.code == 2 and value.split(",")[-1] in capsys.readouterr().err


def test_best_takes_wall_and_cpu_rates_each_at_their_best():
    # (tokens/s, tokens, tokens per CPU-second): the load slowed each in a different repeat
    timings = [(100.0, 500, 300.0), (150.0, 500, 250.0), (120.0, 500, 280.0)]
    assert bt.best(timings) == (150.0, 500, 300.0)
    assert bt.speedup((150.0, 500, 300.0), (100.0, 500, 200.0)) == (1.5, 1.5)
