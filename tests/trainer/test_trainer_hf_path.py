"""The transformers + peft path (`backend: hf`), which every real checkpoint takes, trained end to
end on tiny random-initialised checkpoints of two real architectures (Llama, GPT-NeoX) written
by save_pretrained: all three methods train and report a valid result; adapters and models the
trainer saves load with peft / transformers and give the run's final logits; gradient
accumulation gives the one-big-batch result; bf16 loads frozen base weights in bf16 only."""

import json

import pytest
import torch
from conftest import base_config, run_in_process

from ftscale import results
from ftscale_trainer import models, train
from ftscale_trainer.config import TrainConfig

pytestmark = pytest.mark.slow

ARCHS = ("llama", "gpt_neox")
# Layers LoRA adapts by default ("all-linear": attention and feed-forward, paper §3.3).
ALL_LINEAR = {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
              "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]}
METHODS = {"fmt": dict(learning_rate=3e-3),
           "lora": dict(pet_size=4, learning_rate=1e-2),
           "prompt": dict(pet_size=8, learning_rate=3e-1)}


def hf_run(world, folder, method, **over):
    return base_config(world, model_source=str(folder), method=method,
                       **{"backend": "hf", "log_interval": 1, **METHODS[method], **over})


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_trains_on_both_architectures(mini_world, hf_checkpoints, tmp_path,
                                                   monkeypatch, arch, method):
    config = hf_run(mini_world, hf_checkpoints[arch], method)
    code, full, message = run_in_process(tmp_path, config, monkeypatch)
    assert code == 0
    result = results.parse_result(full)  # the contract, on the trainer's real output
    compact = results.parse_result(message)
    assert result.outcome == compact.outcome == results.SUCCEEDED
    assert compact.test_loss == pytest.approx(result.test_loss)
    train_curve = [loss for _, loss in result.curves["train"]]
    assert len(train_curve) == 12 and all(map(torch.isfinite, torch.tensor(train_curve)))
    assert min(train_curve[-3:]) < train_curve[0] - 0.05, train_curve
    assert result.best_dev_loss < result.curves["dev"][0][1] + 1e-9
    ran = result.config
    assert ran["backend"] == "hf"
    if method == "lora":
        assert ran["lora_targets"] == ALL_LINEAR[arch]
    if method == "fmt":
        assert ran["save"] == "none" and ran["save_dir"] is None
        assert result.trainable_params == result.total_params
    else:
        assert ran["save"] == "adapter" and ran["save_dir"] == str(tmp_path / "out" / "adapter")
        assert sorted(p.name for p in (tmp_path / "out" / "adapter").iterdir()) == [
            "README.md", "adapter_config.json", "adapter_model.safetensors"]
        assert result.trainable_params < result.total_params / 4


def test_lora_targets_that_match_nothing_are_rejected_before_training(mini_world, hf_checkpoints,
                                                                      tmp_path, monkeypatch):
    # Llama's names on a GPT-NeoX checkpoint: the failure the issue describes, now exit 2.
    config = hf_run(mini_world, hf_checkpoints["gpt_neox"], "lora",
                    lora_targets=["q_proj", "v_proj"])
    code, full, _ = run_in_process(tmp_path, config, monkeypatch)
    assert code == 2
    result = results.parse_result(full)
    assert result.reason == results.INVALID_CONFIG and result.steps is None
    assert "query_key_value" in result.message and "dense_4h_to_h" in result.message


def _capture_prepared(monkeypatch):
    """Keep the Prepared a run trains, so a test can use the run's final (selected) model."""
    seen = []
    real = train.prepare

    def prepare(*args, **kwargs):
        seen.append(real(*args, **kwargs))
        return seen[-1]
    monkeypatch.setattr(train, "prepare", prepare)
    return seen


def _logits(tuned, ids):
    """Next-token logits at every position of `ids` from a TunedModel (native or HFTuned)."""
    with torch.no_grad():
        return tuned.eval()(ids, torch.ones_like(ids, dtype=torch.bool))


@pytest.mark.parametrize("backend, arch, method", [
    ("native", None, "lora"), ("native", None, "prompt"),
    ("hf", "gpt_neox", "lora"), ("hf", "llama", "prompt")])
def test_saved_adapters_load_with_peft_and_give_the_final_logits(
        mini_world, hf_checkpoints, tmp_path, monkeypatch, backend, arch, method):
    import peft
    from transformers import AutoModelForCausalLM

    folder = mini_world / "model" if backend == "native" else hf_checkpoints[arch]
    config = hf_run(mini_world, folder, method, backend=backend, max_steps=6, eval_interval=3)
    monkeypatch.setenv("FTSCALE_ACCELERATE", "0")
    seen = _capture_prepared(monkeypatch)
    final = train.run(TrainConfig.from_dict(config), str(tmp_path / "out"), None, lambda _m: None)
    (prep,) = seen
    assert prep.loaded.backend == backend
    adapter = final.config["save_dir"]
    base = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    loaded = peft.PeftModel.from_pretrained(base, adapter)
    assert type(loaded.peft_config["default"]).__name__ == (
        "LoraConfig" if method == "lora" else "PromptTuningConfig")
    ids = torch.randint(3, 300, (2, 11), generator=torch.Generator().manual_seed(3))
    prompt_len = config["pet_size"] if method == "prompt" else 0
    ours = _logits(prep.loaded.model, ids)
    theirs = _logits(models.HFTuned(loaded, prompt_len), ids)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    # The adapter moved away from its initialisation: the check above compares trained weights.
    untuned = _logits(models.HFTuned(AutoModelForCausalLM.from_pretrained(str(folder))), ids)
    assert not torch.allclose(ours, untuned, atol=1e-3)


def _adapter_tensors(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.parametrize("method", ["lora", "fmt"])
def test_gradient_accumulation_4_x_8_matches_one_batch_of_32(mini_world, hf_checkpoints, tmp_path,
                                                             monkeypatch, method):
    # Also with activation checkpointing on: recomputation must not change a single gradient.
    runs = {}
    for name, over in {"whole": {}, "micro": dict(micro_batch_size=8, gradient_checkpointing="true")}.items():
        config = hf_run(mini_world, hf_checkpoints["gpt_neox"], method, batch_size=32, max_steps=4,
                        eval_interval=2, save="adapter" if method == "lora" else "model", **over)
        (tmp_path / name).mkdir()
        code, full, _ = run_in_process(tmp_path / name, config, monkeypatch)
        assert code == 0
        runs[name] = results.parse_result(full)
    whole, micro = runs["whole"], runs["micro"]
    assert micro.config["micro_batch_size"] == 8 and whole.config["micro_batch_size"] == 32
    assert micro.config["gradient_checkpointing"] == "true"
    assert micro.tokens_seen == whole.tokens_seen
    for (_, a), (_, b) in zip(micro.curves["train"], whole.curves["train"], strict=True):
        assert a == pytest.approx(b, abs=1e-5)
    assert micro.test_loss == pytest.approx(whole.test_loss, abs=1e-5)
    if method == "lora":
        ours, theirs = (_adapter_tensors(tmp_path / n / "out" / "adapter") for n in ("micro", "whole"))
    else:
        from safetensors.torch import load_file

        ours, theirs = (load_file(str(tmp_path / n / "out" / "model" / "model.safetensors"))
                        for n in ("micro", "whole"))
    assert ours.keys() == theirs.keys()
    for key in ours:
        if key.endswith("query_key_value.bias"):
            # The key bias's gradient is zero up to rounding (softmax ignores a shift shared by
            # all keys), and Adam scales rounding noise up to ±learning rate: not comparable.
            continue
        assert torch.allclose(ours[key], theirs[key], atol=1e-5), (key, (ours[key] - theirs[key]).abs().max())


@pytest.mark.parametrize("backend, arch", [("native", None), ("hf", "gpt_neox")])
def test_saved_models_load_with_transformers_and_give_the_final_logits(
        mini_world, hf_checkpoints, tmp_path, monkeypatch, backend, arch):
    """save: model — LoRA merged into the weights (native), the finetuned weights (fmt, hf)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = mini_world / "model" if backend == "native" else hf_checkpoints[arch]
    method = "lora" if backend == "native" else "fmt"
    config = hf_run(mini_world, folder, method, backend=backend, max_steps=6, eval_interval=3,
                    save="model")
    monkeypatch.setenv("FTSCALE_ACCELERATE", "0")
    seen = _capture_prepared(monkeypatch)
    final = train.run(TrainConfig.from_dict(config), str(tmp_path / "out"), None, lambda _m: None)
    saved = final.config["save_dir"]
    assert saved == str(tmp_path / "out" / "model")
    ids = torch.randint(3, 300, (2, 11), generator=torch.Generator().manual_seed(4))
    ours = _logits(seen[0].loaded.model, ids)
    theirs = _logits(models.HFTuned(AutoModelForCausalLM.from_pretrained(saved)), ids)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    assert AutoTokenizer.from_pretrained(saved).eos_token == "</s>"


@pytest.mark.parametrize("backend", ["native", "hf"])
def test_bf16_loads_frozen_base_weights_in_bf16_and_keeps_fmt_in_fp32(mini_world, backend):
    def load(method, **extra):
        config = TrainConfig.from_dict(base_config(mini_world, method=method, backend=backend,
                                                   **extra)).resolved()
        return models.load(config, str(mini_world / "model"), seed=0, precision="bf16").model

    for method, size in (("lora", 4), ("prompt", 8)):
        model = load(method, pet_size=size)
        dtypes = {p.dtype for p in model.parameters() if not p.requires_grad}
        trained = {p.dtype for p in model.parameters() if p.requires_grad}
        assert dtypes == {torch.bfloat16} and trained == {torch.float32}, method
    assert {p.dtype for p in load("fmt").parameters()} == {torch.float32}  # fp32 master weights
