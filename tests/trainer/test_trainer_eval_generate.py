"""Greedy decoding on the hf backend goes through transformers' `generate()` (KV cache, batched,
left-padded) and gives the same text as decoding each example alone, without padding or cache,
by re-running the model on its whole prefix — on tiny random-initialised Llama and GPT-NeoX
checkpoints (save_pretrained, no download), for full models, LoRA and prompt tuning."""

import pytest
import torch

from ftscale_trainer import data, evaluate, models
from ftscale_trainer.config import TrainConfig
from ftscale_trainer.runtime import PlainRuntime

pytestmark = pytest.mark.slow

LORA_TARGETS = {"llama": ["q_proj", "v_proj", "down_proj"], "gpt_neox": ["query_key_value", "dense"]}


@pytest.fixture(scope="module")
def checkpoints(hf_checkpoints):
    """The shared tiny Llama and GPT-NeoX checkpoints (tests/trainer/conftest.py): random,
    initializer_range 0.2, so greedy argmax is not a coin toss between near-equal logits."""
    return hf_checkpoints


def _load(mini_world, folder, arch, method):
    doc = {"model": arch, "model_source": str(folder), "method": method, "data_size": 8,
           "backend": "hf", "train_path": str(mini_world / "train.jsonl"),
           "dev_path": str(mini_world / "dev.jsonl"), "test_path": str(mini_world / "test.jsonl"),
           "source_lang": "English", "target_lang": "German"}
    if method == "lora":
        doc.update(pet_size=4, lora_targets=LORA_TARGETS[arch])
    if method == "prompt":
        doc["pet_size"] = 6
    config = TrainConfig.from_dict(doc).resolved()
    loaded = models.load(config, str(folder), seed=0)
    if method == "lora":  # peft starts B at zero (an identity adapter): give it an effect
        with torch.no_grad():
            for name, p in loaded.model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return config, loaded


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["fmt", "lora", "prompt"])
def test_batched_generate_equals_one_at_a_time_greedy(mini_world, checkpoints, arch, method, monkeypatch):
    config, loaded = _load(mini_world, checkpoints[arch], arch, method)
    model, codec, runtime = loaded.model, loaded.codec, PlainRuntime("fp32")
    examples = data.parse_rows(data.load_examples(str(mini_world / "test.jsonl"), "jsonl",
                                                  "source", "target"))[:10]
    encoded = data.encode(examples, config, codec)
    assert len({len(e.source_ids) for e in encoded}) > 3  # rows of many lengths: real padding

    calls = []
    # Prompt tuning decodes through the base model (see evaluate._generate_prompt_tuned).
    generator = model.inner.get_base_model() if method == "prompt" else model.inner
    generate = generator.generate
    monkeypatch.setattr(generator, "generate", lambda **kw: calls.append(kw) or generate(**kw))
    batched = evaluate.greedy_decode(model, encoded, codec, runtime, max_new_tokens=10, batch_size=4)
    assert len(calls) == 3 and all(kw["generation_config"].do_sample is False for kw in calls)
    assert not calls[0]["attention_mask"].all()  # rows were padded

    alone = []
    model.eval()
    with torch.no_grad():
        for e in encoded:  # no padding, no cache: the model's own forward on the whole prefix
            ids, mask = evaluate.left_pad([e.source_ids], codec.pad_id)
            row = evaluate._greedy_loop(model, ids, mask, codec, runtime, 10)[0]
            alone.append(codec.decode(evaluate.strip_special(row, codec.eos_id, codec.pad_id)).strip())
    assert batched == alone
    assert sum(len(text) for text in batched) > 20  # it generated something to compare
