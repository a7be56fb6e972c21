"""The native fast path against transformers + peft: the same logits from the same checkpoint,
and the same trainable/total parameter counts for LoRA and prompt tuning as peft reports."""

import pytest
import torch

from ftscale_trainer import models, tiny_llama
from ftscale_trainer.config import TrainConfig

pytestmark = pytest.mark.slow


def _config(world, method, **extra):
    return TrainConfig.from_dict({"model": "mini", "model_source": str(world / "model"), "method": method,
                                  "data_size": 10, "train_path": "x", "dev_path": "x", "test_path": "x",
                                  **extra}).resolved()


def test_native_llama_matches_transformers_logits(mini_world):
    from transformers import LlamaForCausalLM

    native = tiny_llama.load_pretrained(str(mini_world / "model")).eval()
    hf = LlamaForCausalLM.from_pretrained(str(mini_world / "model"), torch_dtype=torch.float32).eval()
    ids = torch.randint(0, native.shape.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(native(ids), hf(input_ids=ids).logits, atol=1e-4)
        # Left padding with an attention mask (batched greedy decoding) matches too.
        mask = torch.ones_like(ids)
        mask[0, :5] = 0
        ours = native(ids, attention_mask=mask)
        theirs = hf(input_ids=ids, attention_mask=mask).logits
        assert torch.allclose(ours[:, 5:][mask[:, 5:].bool()], theirs[:, 5:][mask[:, 5:].bool()], atol=1e-4)


@pytest.mark.parametrize("method, extra", [("lora", {"pet_size": 4}), ("lora", {"pet_size": 16}),
                                           ("prompt", {"pet_size": 8})])
def test_trainable_and_total_parameters_match_peft(mini_world, method, extra):
    import peft
    from transformers import LlamaForCausalLM

    config = _config(mini_world, method, **extra)
    native = models.load(config, str(mini_world / "model"), seed=0)
    base = LlamaForCausalLM.from_pretrained(str(mini_world / "model"), torch_dtype=torch.float32)
    if method == "lora":
        pc = peft.LoraConfig(task_type="CAUSAL_LM", r=config.pet_size, lora_alpha=config.lora_alpha,
                             target_modules=list(config.lora_targets))
    else:
        pc = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.pet_size,
                                     prompt_tuning_init=peft.PromptTuningInit.SAMPLE_VOCAB)
    trainable, total = peft.get_peft_model(base, pc).get_nb_trainable_parameters()
    assert (native.trainable_params, native.total_params) == (trainable, total)


def test_lora_starts_as_the_identity_and_hf_backend_loads(mini_world):
    config = _config(mini_world, "lora", pet_size=4)
    native = models.load(config, str(mini_world / "model"), seed=0)
    hf = models.load(_config(mini_world, "lora", pet_size=4, backend="hf"), str(mini_world / "model"), seed=0)
    assert hf.backend == "hf" and native.backend == "native"
    assert hf.trainable_params == native.trainable_params
    ids = torch.randint(0, 300, (2, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    with torch.no_grad():  # B = 0 at init: both equal the base model's logits
        assert torch.allclose(native.model(ids, mask), hf.model(ids, mask), atol=1e-4)


