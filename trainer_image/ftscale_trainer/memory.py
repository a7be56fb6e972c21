"""How much accelerator memory one training process needs, from config.json alone (torch-free).

Used by the trainer to pick the micro-batch and whether to checkpoint activations on a GPU
(`micro_batch_size` unset, `gradient_checkpointing: auto`), and importable by the study side
to print an estimate or refuse a study that cannot fit. The terms, per process:

* weights: every parameter, 4 bytes (fp32; fmt keeps fp32 master weights) or 2 bytes for the
  frozen base of LoRA and prompt tuning under bf16 (models.base_dtype);
* gradients: 4 bytes per trainable parameter, plus as much again for data parallelism's
  all-reduce buckets when there are several processes;
* optimizer: AdamW's two fp32 moments, 8 bytes per trainable parameter;
* activations per token: per layer (15·h + 4.75·f) bytes at 16-bit, twice that at fp32 — the
  attention (11·h), feed-forward (19·h at f = 4h, scaled with f) and norm (4·h) terms of
  Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  §4.1, without the s² attention-score term that fused attention (SDPA) does not store. With
  gradient checkpointing only each layer's input (2·h or 4·h bytes) is kept, plus one layer's
  full activations during its recomputation;
* logits: fp32 logits and their gradient, 8·vocab bytes per token (an upper bound: the native
  path computes them at target positions only).

An estimate, not a measurement: allocator fragmentation and the CUDA context are covered by
using only `BUDGET_FRACTION` of the device memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Share of the device memory the estimate may fill: the CUDA context (~0.5 GiB), the caching
# allocator's fragmentation and temporary buffers take the rest.
BUDGET_FRACTION = 0.85


@dataclass(frozen=True)
class ModelDims:
    """The sizes that decide memory, read from a transformers config.json."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    params: int  # all parameters, embeddings included

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any]) -> ModelDims:
        """Works for Llama-, GPT-NeoX-, Qwen- and Mistral-style configs (the usual key names);
        GPT-2's n_embd/n_layer are read too. Raises KeyError when a size is missing."""
        hidden = hf.get("hidden_size", hf.get("n_embd"))
        layers = hf.get("num_hidden_layers", hf.get("n_layer"))
        intermediate = hf.get("intermediate_size") or hf.get("n_inner") or 4 * hidden
        vocab = hf["vocab_size"]
        heads = hf.get("num_attention_heads", hf.get("n_head", 1))
        kv = hf.get("num_key_value_heads") or heads
        head_dim = hf.get("head_dim") or hidden // heads
        gated = hf.get("model_type") not in ("gpt_neox", "gpt2", "gptj", "opt", "bloom", "falcon")
        attention = hidden * heads * head_dim * 2 + hidden * kv * head_dim * 2
        mlp = (3 if gated else 2) * hidden * intermediate
        embeddings = vocab * hidden * (1 if hf.get("tie_word_embeddings", True) else 2)
        return cls(layers, hidden, intermediate, vocab, layers * (attention + mlp) + embeddings)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one process needs, split as above; `total(tokens, checkpointing)` adds them up."""

    weights: int
    gradients: int
    optimizer: int
    activations_per_token: int  # all layers, no checkpointing
    checkpointed_per_token: int  # all layers' inputs + one layer's activations, per token
    logits_per_token: int

    def total(self, tokens: int, checkpointing: bool) -> int:
        per_token = self.checkpointed_per_token if checkpointing else self.activations_per_token
        return (self.weights + self.gradients + self.optimizer
                + tokens * (per_token + self.logits_per_token))

    def describe(self, tokens: int, checkpointing: bool) -> str:
        gib = 1024 ** 3
        return (f"weights {self.weights / gib:.2f} + gradients {self.gradients / gib:.2f} + "
                f"optimizer {self.optimizer / gib:.2f} + activations "
                f"{tokens * (self.checkpointed_per_token if checkpointing else self.activations_per_token) / gib:.2f}"
                f" + logits {tokens * self.logits_per_token / gib:.2f} = "
                f"{self.total(tokens, checkpointing) / gib:.2f} GiB for {tokens} tokens"
                f"{' (activation checkpointing)' if checkpointing else ''}")


def estimate(dims: ModelDims, method: str, precision: str, trainable_params: int | None = None,
             processes: int = 1) -> MemoryEstimate:
    """The estimate for one process. `trainable_params` defaults to all parameters for fmt and
    a LoRA-r=16-sized 1% for PET methods (pass the real count when known)."""
    if trainable_params is None:
        trainable_params = dims.params if method == "fmt" else dims.params // 100
    half = precision in ("bf16", "fp16")
    weight_bytes = 2 if (half and method != "fmt") else 4
    act = 1 if half else 2  # the 16-bit terms below, doubled at fp32
    per_layer = act * (15 * dims.hidden + 19 * dims.intermediate // 4)
    gradients = 4 * trainable_params * (2 if processes > 1 else 1)
    return MemoryEstimate(
        weights=weight_bytes * dims.params, gradients=gradients, optimizer=8 * trainable_params,
        activations_per_token=dims.layers * per_layer,
        checkpointed_per_token=dims.layers * 2 * act * dims.hidden + per_layer,
        logits_per_token=8 * dims.vocab)


def plan(est: MemoryEstimate, local_batch: int, tokens_per_example: int, budget_bytes: int,
         micro_batch_size: int | None, checkpointing: str) -> tuple[int, bool]:
    """(micro-batch, checkpointing) for one process's `local_batch` examples: the whole batch
    without checkpointing when it fits `budget_bytes`, else checkpointing ("auto"), else the
    largest micro-batch that fits. A `micro_batch_size` or an explicit "true"/"false" given by
    the user is kept. Never below one example: an estimate that says even that will not fit is
    the study side's to refuse."""
    choices = [False, True] if checkpointing == "auto" else [checkpointing == "true"]
    sizes = [micro_batch_size] if micro_batch_size else range(local_batch, 0, -1)
    for size in sizes:
        for ckpt in choices:
            if est.total(size * tokens_per_example, ckpt) <= budget_bytes:
                return size, ckpt
    return (micro_batch_size or 1), choices[-1]
