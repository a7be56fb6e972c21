"""The hf backend's LM head at target positions only (models.HFTuned): the decoder's hidden
states at the target positions through the head give exactly the full forward's logits there,
and the same gradients, for FMT, LoRA and prompt tuning on Llama and GPT-NeoX; the head sees
only those positions; an architecture outside HEAD_AT_TARGETS_MODEL_TYPES takes the full
forward."""

import pytest
import torch

from ftscale_trainer import models
from ftscale_trainer.config import TrainConfig

pytestmark = pytest.mark.slow


def _load(folder, method):
    config = TrainConfig.from_dict({
        "model": "m", "model_source": str(folder), "method": method, "data_size": 8,
        "backend": "hf", "pet_size": {"fmt": None, "lora": 4, "prompt": 5}[method],
        "train_path": "t", "dev_path": "d", "test_path": "e"}).resolved()
    tuned = models.load(config, str(folder), seed=0).model
    with torch.no_grad():  # LoRA's B starts at zero: make the adapter change the logits
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(5))
    return tuned


def _batch():
    gen = torch.Generator().manual_seed(3)
    ids = torch.randint(3, 300, (3, 9), generator=gen)
    targets = torch.zeros(3, 9, dtype=torch.bool)
    targets[0, 4:9] = True
    targets[1, 2:6] = True  # positions after the last target still run through the decoder
    targets[2, 7:9] = True
    return ids, targets


def _head_rows(tuned):
    """Record how many rows the output embedding (LM head) is applied to."""
    rows = []
    head = tuned._transformer().get_output_embeddings()
    head.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[:-1].numel()))
    return rows


def _logits_and_grads(forward, tuned, ids, targets, labels):
    tuned.zero_grad(set_to_none=True)
    logits = forward(ids, targets)
    torch.nn.functional.cross_entropy(logits, labels, reduction="sum").backward()
    grads = {n: p.grad.clone() for n, p in tuned.named_parameters() if p.requires_grad}
    return logits.detach(), grads


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
@pytest.mark.parametrize("method", ["fmt", "lora", "prompt"])
def test_head_at_targets_equals_the_full_forward(hf_checkpoints, arch, method):
    tuned = _load(hf_checkpoints[arch], method)
    ids, targets = _batch()
    labels = torch.randint(3, 300, (int(targets.sum()),),
                           generator=torch.Generator().manual_seed(4))
    rows = _head_rows(tuned)
    fast, fast_grads = _logits_and_grads(tuned, tuned, ids, targets, labels)
    assert rows == [int(targets.sum())]  # the head ran on the 11 target positions, not 27
    full, full_grads = _logits_and_grads(tuned._full_forward, tuned, ids, targets, labels)
    assert rows[1] == ids.numel() + (5 * 3 if method == "prompt" else 0)
    assert fast.shape == (int(targets.sum()), full.shape[-1])
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)
    assert fast_grads.keys() == full_grads.keys() and fast_grads
    for name, grad in fast_grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_an_architecture_not_known_to_end_in_a_plain_head_takes_the_full_forward(
        hf_checkpoints, monkeypatch):
    tuned = _load(hf_checkpoints["llama"], "lora")
    ids, targets = _batch()
    rows = _head_rows(tuned)
    fast = tuned(ids, targets).detach()
    monkeypatch.setattr(models, "HEAD_AT_TARGETS_MODEL_TYPES", frozenset())
    full = tuned(ids, targets).detach()
    assert rows == [int(targets.sum()), ids.numel()]
    torch.testing.assert_close(fast, full, rtol=0, atol=1e-5)
