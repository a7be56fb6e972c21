"""FSDP for full-model tuning (`sharding`, ftscale_trainer.runtime.ShardedRuntime): when it is
chosen, and, with two CPU processes (gloo) under torchrun, that a sharded run gives the data
parallel run's losses, that rank 0 alone writes the result, and that a sharded checkpoint
resumes — sharded, or unsharded in one process (checkpoints hold whole tensors)."""

import json
import os
import subprocess
import sys

import pytest
from conftest import PYTHONPATH, base_config, run_trainer

from ftscale_trainer.config import ConfigError, TrainConfig
from ftscale_trainer.runtime import choose_sharding, shard_units


# ---- the choice (pure) ---------------------------------------------------------------------------
@pytest.mark.parametrize("setting, method, world, device, fits, expected", [
    ("auto", "fmt", 8, "cuda", False, "fsdp"),   # does not fit one GPU: shard
    ("auto", "fmt", 8, "cuda", True, "none"),    # fits: data parallel is simpler and as fast
    ("auto", "fmt", 8, "cuda", None, "none"),    # no estimate (no config.json): do not guess
    ("auto", "fmt", 2, "cpu", False, "none"),    # never on CPU unless asked
    ("auto", "lora", 8, "cuda", False, "none"),  # PET methods run data parallel
    ("auto", "fmt", 1, "cuda", False, "none"),   # one process: nothing to shard across
    ("fsdp", "fmt", 2, "cpu", None, "fsdp"),     # asked for: honoured, CPU included
    ("fsdp", "fmt", 1, "cuda", None, "none"),
    ("none", "fmt", 8, "cuda", False, "none"),
])
def test_choose_sharding(setting, method, world, device, fits, expected):
    kind, why = choose_sharding(setting, method, world, device, fits)
    assert kind == expected and why


def test_fsdp_is_refused_for_pet_methods_and_unknown_values():
    with pytest.raises(ConfigError, match="full-model tuning"):
        choose_sharding("fsdp", "lora", 2, "cuda", None)
    with pytest.raises(ConfigError, match="sharding must be one of"):
        choose_sharding("zero3", "fmt", 2, "cuda", None)
    base = {"model": "m", "method": "prompt", "data_size": 8, "task": "toy-en-de"}
    with pytest.raises(ConfigError, match="full-model tuning"):
        TrainConfig.from_dict(dict(base, sharding="fsdp"))
    with pytest.raises(ConfigError, match="sharding must be one of"):
        TrainConfig.from_dict(dict(base, method="fmt", sharding="yes"))
    assert TrainConfig.from_dict(dict(base, method="fmt", sharding="fsdp")).sharding == "fsdp"


def test_the_shard_units_are_the_decoder_layers():
    from ftscale_trainer.tiny_llama import LlamaLM, LlamaShape

    model = LlamaLM(LlamaShape(vocab_size=50, hidden_size=16, intermediate_size=32,
                               num_hidden_layers=3, num_attention_heads=2, num_key_value_heads=2))
    assert shard_units(model) == list(model.model.layers)


# ---- two CPU processes under torchrun --------------------------------------------------------------
def _torchrun(tmp_path, name, config, env_extra=None, timeout=600):
    cfg = tmp_path / f"{name}.json"
    cfg.write_text(json.dumps(config))
    term = tmp_path / f"{name}-termination-log"
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, OMP_NUM_THREADS="1",
               TERMINATION_MESSAGE_PATH=str(term), **(env_extra or {}))
    env.pop("FTSCALE_ACCELERATE", None)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "-m", "ftscale_trainer", "--config", str(cfg),
                           "--output", str(tmp_path / name)],
                          capture_output=True, text=True, env=env, timeout=timeout)
    result_file = tmp_path / name / "result.json"
    result = json.loads(result_file.read_text()) if result_file.exists() else None
    return done, result


def _why(done) -> str:
    """The trainer's own log lines and errors of a failed launch (torchrun's noise left out)."""
    lines = [l for l in done.stderr.splitlines()
             if "ftscale-train" in l or "Error" in l or l.startswith("[rank")]
    return "\n".join(lines[-60:])


def _fmt(world, **over):
    # 8 steps with a checkpoint every 5: the one of step 5 is left behind for the resume test.
    return base_config(world, method="fmt", learning_rate=3e-3, max_steps=8, eval_interval=4,
                       log_interval=1, checkpoint_interval=5, **over)


@pytest.fixture(scope="module")
def dp_and_fsdp(mini_world, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    runs = {}
    for kind in ("none", "fsdp"):
        done, result = _torchrun(tmp, kind, _fmt(mini_world, sharding=kind))
        assert done.returncode == 0, _why(done)
        runs[kind] = (done, result)
    return tmp, runs


@pytest.mark.slow
def test_fsdp_on_two_cpu_processes_gives_the_data_parallel_losses(dp_and_fsdp):
    _, runs = dp_and_fsdp
    (_, dp), (done, fsdp) = runs["none"], runs["fsdp"]
    assert dp["device"] == "cpu x2 processes"
    assert fsdp["device"] == "cpu x2 processes, fsdp" and fsdp["config"]["sharding"] == "fsdp"
    assert dp["config"]["sharding"] == "none"
    assert done.stderr.count("sharding: fsdp (sharding: fsdp)") == 2  # both ranks chose it
    assert [s for s, _ in fsdp["curves"]["train"]] == list(range(1, 9))
    for (s, a), (_, b) in zip(fsdp["curves"]["train"], dp["curves"]["train"]):
        assert a == pytest.approx(b, abs=1e-5), s
    for (s, a), (_, b) in zip(fsdp["curves"]["dev"], dp["curves"]["dev"]):
        assert a == pytest.approx(b, abs=1e-5), s
    assert fsdp["test_loss"] == pytest.approx(dp["test_loss"], abs=1e-5)
    assert fsdp["best_step"] == dp["best_step"] and fsdp["tokens_seen"] == dp["tokens_seen"]
    assert fsdp["trainable_params"] == dp["trainable_params"]


@pytest.mark.slow
def test_rank_0_alone_writes_the_result_and_a_whole_checkpoint(dp_and_fsdp):
    tmp, runs = dp_and_fsdp
    done, fsdp = runs["fsdp"]
    message = json.loads((tmp / "fsdp-termination-log").read_text())
    assert message["outcome"] == "Succeeded" and message["test_loss"] == fsdp["test_loss"]
    assert done.stdout.count('"outcome"') == 1  # one compact result printed: rank 0's
    # The checkpoint of step 5 holds whole tensors (the model's shapes), like an unsharded one.
    from safetensors import safe_open

    state = json.loads((tmp / "fsdp" / "checkpoint" / "state.json").read_text())
    assert state["progress"]["step"] == 5 and state["has_best"]
    with safe_open(str(tmp / "fsdp" / "checkpoint" / state["tensors"]), "pt") as handle:
        shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    with safe_open(str(tmp / "none" / "checkpoint" / state["tensors"]), "pt") as handle:
        dp_shapes = {k: tuple(handle.get_slice(k).get_shape()) for k in handle.keys()}
    assert shapes == dp_shapes
    assert shapes["model/base.model.embed_tokens.weight"][0] > 2  # not a half


@pytest.mark.slow
def test_a_sharded_checkpoint_resumes_sharded_and_in_one_process(mini_world, dp_and_fsdp, tmp_path):
    import shutil

    src, runs = dp_and_fsdp
    _, fsdp = runs["fsdp"]
    # Sharded, two processes: both ranks resume from step 5 and end where the run ended.
    shutil.copytree(src / "fsdp" / "checkpoint", tmp_path / "again" / "checkpoint")
    done, again = _torchrun(tmp_path, "again", _fmt(mini_world, sharding="fsdp"))
    assert done.returncode == 0, _why(done)
    assert done.stderr.count("resuming from step 5") == 2
    for (s, a), (_, b) in zip(again["curves"]["train"], fsdp["curves"]["train"]):
        assert a == pytest.approx(b, abs=1e-6), s
    assert again["test_loss"] == pytest.approx(fsdp["test_loss"], abs=1e-6)
    # Unsharded, one process: the same whole tensors, the same continuation.
    (tmp_path / "one").mkdir()
    shutil.copytree(src / "fsdp" / "checkpoint", tmp_path / "one" / "out" / "checkpoint")
    done, one, _ = run_trainer(tmp_path / "one", _fmt(mini_world, sharding="none"))
    assert done.returncode == 0, _why(done)
    assert "resuming from step 5" in done.stderr
    assert one["test_loss"] == pytest.approx(fsdp["test_loss"], abs=1e-5)
    assert one["curves"]["train"][-1][1] == pytest.approx(fsdp["curves"]["train"][-1][1], abs=1e-5)
