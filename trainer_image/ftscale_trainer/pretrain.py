"""Pretraining of the toy family: next-token prediction on packed monolingual text.

One model per call, from scratch, AdamW with linear warm-up and cosine decay (the paper's base
models used a cosine schedule too, §3.2), saving Hugging Face-format checkpoints at chosen
fractions of the token budget so that pretraining tokens can be a scaling factor (the paper
proxies that factor by intermediate checkpoints of one run as well).
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ftscale_trainer.tiny_llama import LlamaLM, LlamaShape, save_pretrained


@dataclass(frozen=True)
class PretrainPlan:
    name: str
    shape: LlamaShape
    tokens: int  # pretraining token budget
    learning_rate: float
    seq_len: int = 64  # the finetuning sequences are shorter still; attention cost ∝ length
    batch_size: int = 32
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1
    checkpoint_fractions: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)
    seed: int = 0

    @property
    def steps(self) -> int:
        return max(1, self.tokens // (self.seq_len * self.batch_size))


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warm-up to `peak`, then cosine to peak·min_ratio at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def dev_loss(model: LlamaLM, dev: np.ndarray, seq_len: int, max_rows: int = 256) -> float:
    rows = min(max_rows, (len(dev) - 1) // seq_len)
    data = torch.from_numpy(dev[: rows * seq_len + 1].astype(np.int64))
    x = data[:-1].view(rows, seq_len)
    y = data[1:].view(rows, seq_len)
    model.eval()
    with torch.no_grad():
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
    model.train()
    return float(loss)


def pretrain(plan: PretrainPlan, train: np.ndarray, dev: np.ndarray, out_dir: str,
             tokenizer_dir: str, on_step=None) -> list[dict]:
    """Train plan.shape from scratch on `train` (a flat token array) and save checkpoints.

    Returns [{"tokens", "dev_loss", "path"}] per checkpoint (path relative to out_dir's parent).
    `on_step(n)` is called after each optimizer step (progress bars). Raises ValueError if the
    corpus is too small for the budget, RuntimeError on a non-finite loss.
    """
    gen = torch.Generator().manual_seed(plan.seed)
    torch.manual_seed(plan.seed)
    model = LlamaLM(plan.shape)
    model.init_weights(gen)
    opt = torch.optim.AdamW(model.parameters(), lr=plan.learning_rate, betas=(0.9, 0.95),
                            weight_decay=0.1)
    rows_per_step = plan.batch_size
    n_rows = (len(train) - 1) // plan.seq_len
    if n_rows < plan.steps * rows_per_step:
        raise ValueError(f"corpus has {len(train)} tokens, budget needs {plan.tokens}")
    # One pass over the first `tokens` of the corpus in a seeded random order of windows.
    order = torch.randperm(plan.steps * rows_per_step, generator=gen)
    data = torch.from_numpy(train[: plan.steps * rows_per_step * plan.seq_len + 1].astype(np.int64))
    save_at = {max(1, round(f * plan.steps)): f for f in plan.checkpoint_fractions}
    saved = []
    for step in range(plan.steps):
        lr = lr_at(step, plan.steps, plan.learning_rate, plan.warmup_steps, plan.min_lr_ratio)
        for group in opt.param_groups:
            group["lr"] = lr
        idx = order[step * rows_per_step:(step + 1) * rows_per_step]
        starts = idx * plan.seq_len
        window = starts[:, None] + torch.arange(plan.seq_len + 1)
        batch = data[window]
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        if not torch.isfinite(loss):
            raise RuntimeError(f"{plan.name}: non-finite pretraining loss at step {step}")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if on_step:
            on_step(1)
        if step + 1 in save_at:
            tokens = (step + 1) * rows_per_step * plan.seq_len
            folder = os.path.join(out_dir, f"tokens-{tokens}")
            save_pretrained(model, folder)
            for name in os.listdir(tokenizer_dir):
                shutil.copy(os.path.join(tokenizer_dir, name), folder)
            saved.append({"tokens": tokens, "dev_loss": round(dev_loss(model, dev, plan.seq_len), 4),
                          "path": os.path.relpath(folder, os.path.dirname(os.path.dirname(out_dir)))})
    return saved
