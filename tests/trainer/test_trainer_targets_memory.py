"""LoRA targets from config.json (peft_targets) and the memory estimate's plan (memory): the pure
functions the trainer and the study-side preflight share."""

import json

import pytest

from ftscale_trainer import memory, peft_targets
from ftscale_trainer.config import ConfigError
from ftscale_trainer.tiny_llama import LlamaShape

LLAMA = LlamaShape(vocab_size=400, hidden_size=32, intermediate_size=88, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=4).hf_config()


def test_llama_layers_are_listed_without_transformers():
    layers = peft_targets.linear_layers(LLAMA)
    assert len(layers) == 2 * 7 and layers[0] == "model.layers.0.self_attn.q_proj"
    assert peft_targets.check_targets(LLAMA, None) == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_a_list_for_several_architectures_keeps_what_matches():
    assert peft_targets.check_targets(LLAMA, ["query_key_value", "q_proj", "mlp.down_proj"]) == [
        "q_proj", "mlp.down_proj"]


def test_targets_that_match_nothing_name_the_models_layers(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    with pytest.raises(ConfigError) as info:
        peft_targets.check_targets(str(tmp_path), ["query_key_value"])
    assert "match no linear layer" in str(info.value) and "gate_proj" in str(info.value)
    with pytest.raises(ConfigError, match="cannot read"):
        peft_targets.check_targets(str(tmp_path / "missing"), None)


def test_peft_matching_rule_is_a_dotted_suffix():
    assert peft_targets.matches("model.layers.0.self_attn.q_proj", "self_attn.q_proj")
    assert not peft_targets.matches("model.layers.0.self_attn.xq_proj", "q_proj")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
def test_all_linear_is_what_peft_resolves_and_peft_default_is_its_table(hf_checkpoints, arch):
    import peft
    from transformers import AutoModelForCausalLM

    folder = str(hf_checkpoints[arch])
    model = AutoModelForCausalLM.from_pretrained(folder)
    tuned = peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules="all-linear"))
    peft_chose = {n.removeprefix("base_model.model.") for n in tuned.targeted_module_names}
    hf = json.loads((hf_checkpoints[arch] / "config.json").read_text())
    layers = peft_targets.linear_layers(hf)
    ours = peft_targets.check_targets(folder, None)
    assert {n for n in layers if any(peft_targets.matches(n, t) for t in ours)} == peft_chose
    # The meta-device listing (every architecture but plain Llama) gives the same as loading.
    assert set(peft_targets._meta_linear_layers(hf)) == set(layers)
    expected = {"llama": ["q_proj", "v_proj"], "gpt_neox": ["query_key_value"]}[arch]
    assert peft_targets.check_targets(folder, ["peft-default"]) == expected


# ---- memory ----------------------------------------------------------------------------------
LLAMA_7B = dict(model_type="llama", vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                num_hidden_layers=32, num_attention_heads=32, tie_word_embeddings=False)
GIB = 1024 ** 3


def test_dimensions_give_the_known_parameter_counts():
    assert memory.ModelDims.from_hf_config(LLAMA_7B).params == pytest.approx(6.74e9, rel=0.01)
    pythia_1b = dict(model_type="gpt_neox", vocab_size=50304, hidden_size=2048,
                     intermediate_size=8192, num_hidden_layers=16, num_attention_heads=8,
                     tie_word_embeddings=False)  # Pythia-1B: 1.01B parameters
    assert memory.ModelDims.from_hf_config(pythia_1b).params == pytest.approx(1.01e9, rel=0.02)


def test_fmt_of_7b_needs_more_than_an_80gb_gpu_and_bf16_lora_fits():
    dims = memory.ModelDims.from_hf_config(LLAMA_7B)
    fmt = memory.estimate(dims, "fmt", "bf16")
    assert fmt.weights + fmt.gradients + fmt.optimizer == 16 * dims.params  # 4+4+8 bytes
    assert fmt.total(0, False) > 80 * GIB
    lora = memory.estimate(dims, "lora", "bf16", trainable_params=20_000_000)
    assert lora.weights == 2 * dims.params and lora.total(16 * 96, False) < 40 * GIB


def test_the_plan_keeps_the_whole_batch_then_checkpoints_then_splits():
    est = memory.MemoryEstimate(weights=100, gradients=0, optimizer=0, activations_per_token=10,
                                checkpointed_per_token=2, logits_per_token=0)
    assert memory.plan(est, 8, 10, 100 + 8 * 10 * 10, None, "auto") == (8, False)
    assert memory.plan(est, 8, 10, 100 + 8 * 10 * 2, None, "auto") == (8, True)
    assert memory.plan(est, 8, 10, 100 + 3 * 10 * 2, None, "auto") == (3, True)
    assert memory.plan(est, 8, 10, 100 + 3 * 10 * 10, None, "false") == (3, False)
    assert memory.plan(est, 8, 10, 0, 4, "true") == (4, True)  # the user's choice stands
