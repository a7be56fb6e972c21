"""Base model + tokenizer loading, and the three finetuning methods, behind one small interface.

`TunedModel.forward(input_ids, target_mask, attention_mask=None)` returns next-token logits
only at the positions in `target_mask` ([N, vocab]); evaluation, training and greedy decoding
all use just that. Two backends implement it:

* native — the pure-torch Llama of tiny_llama.py with LoRA and prompt tuning written out here
  (no transformers/peft import: that import alone costs more than a toy run). Applying the LM
  head only at target positions is a large saving for tiny models with a 2K vocabulary.
* hf — transformers' AutoModelForCausalLM with peft's LoraConfig / PromptTuningConfig, for any
  architecture the native path does not cover.

The native methods mirror peft exactly: LoRA adds B·A·(alpha/r) on the named projections with
A Kaiming-uniform and B zero (peft's default init); prompt tuning prepends |P| trainable vectors
initialised from the embeddings of |P| sampled vocabulary ids (peft's SAMPLE_VOCAB). The tests
compare parameter counts and logits against peft itself.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import torch
from torch import nn

from ftscale_trainer import tiny_llama
from ftscale_trainer.config import ConfigError, TrainConfig


# ---- tokenizers --------------------------------------------------------------------------------
class Codec:
    """Text ↔ ids. Wraps a `tokenizers` tokenizer.json (fast, light) or a transformers tokenizer."""

    def __init__(self, folder: str, prefer_fast_file: bool = True):
        path = os.path.join(folder, "tokenizer.json")
        self._hf = None
        special = {}
        cfg_path = os.path.join(folder, "tokenizer_config.json")
        if os.path.exists(cfg_path):
            with open(cfg_path, encoding="utf-8") as handle:
                special = json.load(handle)
        if prefer_fast_file and os.path.exists(path):
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(path)
            self.bos_id = self._id(special.get("bos_token"))
            self.eos_id = self._id(special.get("eos_token"))
            self.pad_id = self._id(special.get("pad_token"))
        else:
            from transformers import AutoTokenizer

            self._hf = AutoTokenizer.from_pretrained(folder)
            self.bos_id = self._hf.bos_token_id
            self.eos_id = self._hf.eos_token_id
            self.pad_id = self._hf.pad_token_id
        if self.eos_id is None:
            raise ConfigError(f"the tokenizer in {folder} has no EOS token; targets need one")
        if self.pad_id is None:
            self.pad_id = self.eos_id  # pads never carry loss; any id will do

    @property
    def hf_tokenizer(self):
        """The transformers tokenizer (hf backend), None on the tokenizer.json path."""
        return self._hf

    def _id(self, token) -> int | None:
        if isinstance(token, dict):
            token = token.get("content")
        return None if token is None else self._tok.token_to_id(token)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self._hf is not None:
            return self._hf(texts, add_special_tokens=False)["input_ids"]
        return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=True)
        return self._tok.decode(ids, skip_special_tokens=True)


# ---- native methods ------------------------------------------------------------------------------
class LoraLinear(nn.Module):
    """y = W x + (alpha / r) · B A dropout(x), W frozen; names follow peft (lora_A, lora_B)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # peft's default
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(self.dropout(x))) * self.scaling


def add_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float) -> int:
    """Replace every nn.Linear whose dotted name matches a target (peft's rule,
    peft_targets.matches) with a LoraLinear. Returns how many were wrapped; raises ConfigError
    when none match."""
    from ftscale_trainer.peft_targets import matches

    chosen = [name for name, module in model.named_modules()
              if isinstance(module, nn.Linear) and any(matches(name, t) for t in targets)]
    for name in chosen:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, attr, LoraLinear(getattr(parent, attr), rank, alpha, dropout))
    if not chosen:
        raise ConfigError(f"lora_targets {targets} match no linear layer of this model")
    return len(chosen)


class NativeTuned(nn.Module):
    def __init__(self, base: tiny_llama.LlamaLM, method: str, prompt_len: int = 0,
                 generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.method = method
        self.prompt_len = prompt_len
        if method == "prompt":
            ids = torch.randint(0, base.shape.vocab_size, (prompt_len,), generator=generator)
            # fp32 even when the frozen embeddings are bf16: the trained tensor keeps full precision
            self.soft_prompt = nn.Parameter(base.model.embed_tokens.weight[ids].detach().float())

    def forward(self, input_ids, target_mask, attention_mask=None):
        embeds = self.base.embed(input_ids)
        if self.method == "prompt":
            b = input_ids.shape[0]
            prompt = self.soft_prompt.to(embeds.dtype).expand(b, -1, -1)
            embeds = torch.cat([prompt, embeds], dim=1)
            if attention_mask is not None:
                ones = attention_mask.new_ones(b, self.prompt_len)
                attention_mask = torch.cat([ones, attention_mask], dim=1)
            hidden = self.base.hidden(embeds, attention_mask)[:, self.prompt_len:]
        else:
            hidden = self.base.hidden(embeds, attention_mask)
        return self.base.lm_head(hidden[target_mask])


# Architectures whose causal-LM forward is exactly `head(decoder(...).last_hidden_state)` — no
# logit soft-capping or scaling (Gemma 2, Granite, Cohere have those) — so HFTuned may run the
# decoder itself and apply the head at target positions only. Others take the full forward.
HEAD_AT_TARGETS_MODEL_TYPES = frozenset({
    "llama", "mistral", "qwen2", "qwen3", "gpt_neox", "gemma", "phi3", "olmo", "olmo2",
    "stablelm"})


class HFTuned(nn.Module):
    """A transformers causal LM (or a peft model around one) behind the TunedModel interface.

    As on the native path, the LM head runs only at the `target_mask` positions when the
    architecture allows (HEAD_AT_TARGETS_MODEL_TYPES): the decoder gives the hidden states,
    and head(hidden[target_mask]) equals the full forward's logits[target_mask] — on the toy
    models the head over every position was about a third of a training step. Training and
    loss forwards pass use_cache=False: a KV cache is built for nothing otherwise. Prompt
    tuning prepends the soft prompt as peft's PeftModelForCausalLM.forward does (word
    embeddings, get_prompt, one attention-mask column each)."""

    def __init__(self, peft_or_model: nn.Module, prompt_len: int = 0):
        super().__init__()
        self.inner = peft_or_model
        self.prompt_len = prompt_len

    def _transformer(self) -> nn.Module:
        """The transformers model: peft's base model (LoRA layers injected in place), or inner."""
        get_base = getattr(self.inner, "get_base_model", None)
        return get_base() if get_base is not None else self.inner

    def forward(self, input_ids, target_mask, attention_mask=None):
        model = self._transformer()
        if getattr(model.config, "model_type", None) not in HEAD_AT_TARGETS_MODEL_TYPES:
            return self._full_forward(input_ids, target_mask, attention_mask)
        decoder, head = model.base_model, model.get_output_embeddings()
        if self.prompt_len:
            # PeftModelForCausalLM.forward for prompt tuning, up to the base model's decoder
            embeds = self.inner.word_embeddings(input_ids)
            prompts = self.inner.get_prompt(batch_size=input_ids.shape[0]).to(embeds.dtype)
            embeds = torch.cat((prompts, embeds), dim=1)
            if attention_mask is not None:
                ones = attention_mask.new_ones(input_ids.shape[0], self.prompt_len)
                attention_mask = torch.cat((ones, attention_mask), dim=1)
            hidden = decoder(inputs_embeds=embeds, attention_mask=attention_mask,
                             use_cache=False).last_hidden_state[:, self.prompt_len:]
        else:
            hidden = decoder(input_ids=input_ids, attention_mask=attention_mask,
                             use_cache=False).last_hidden_state
        return head(hidden[target_mask])

    def _full_forward(self, input_ids, target_mask, attention_mask=None):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        logits = self.inner(input_ids=input_ids, attention_mask=attention_mask,
                            use_cache=False).logits
        if self.prompt_len:
            logits = logits[:, self.prompt_len:]
        return logits[target_mask]


@dataclass
class LoadedModel:
    model: nn.Module  # a NativeTuned or HFTuned
    codec: Codec
    backend: str  # "native" or "hf"
    trainable_params: int
    total_params: int
    shape: tiny_llama.LlamaShape | None  # for FLOP counts (native/llama only)


# `auto` takes the native path only below this many parameters: there the seconds that importing
# transformers + peft costs are a large share of a run. Larger checkpoints (every real model on
# a GPU cluster) go through transformers + peft, the reference implementations.
NATIVE_AUTO_MAX_PARAMS = 50_000_000


def resolve_backend(config: TrainConfig, folder: str) -> str:
    if config.backend != "auto":
        return config.backend
    if not os.path.exists(os.path.join(folder, "config.json")):
        return "hf"
    hf = tiny_llama.read_hf_config(folder)
    if not tiny_llama.supports(hf):
        return "hf"
    shape = tiny_llama.shape_from_hf(hf)
    total = shape.non_embedding_params() + shape.vocab_size * shape.hidden_size
    return "native" if total < NATIVE_AUTO_MAX_PARAMS else "hf"


def base_dtype(method: str, precision: str) -> torch.dtype:
    """The dtype the base weights load in: bf16 for the frozen weights of LoRA and prompt tuning
    under bf16 (half the memory; autocast computes in bf16 anyway); fp32 otherwise — fmt keeps
    fp32 master weights that autocast casts per operation (mixed precision)."""
    return torch.bfloat16 if precision == "bf16" and method != "fmt" else torch.float32


def load(config: TrainConfig, folder: str, seed: int, precision: str = "fp32",
         gradient_checkpointing: bool = False) -> LoadedModel:
    """Load the base model from `folder` (or a hub id for the hf backend) and apply the method.

    `config` must be resolved (pet_size etc. filled); for LoRA its lora_targets are replaced by
    the concrete names that matched (peft_targets). `precision` is the resolved one ("fp32",
    "bf16", "fp16"). Raises ConfigError for a model the chosen backend cannot load or an
    impossible method setting (e.g. targets that match no layer) — before any training.
    """
    backend = resolve_backend(config, folder)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dtype = base_dtype(config.method, precision)
    if backend == "native":
        from ftscale_trainer import peft_targets

        if config.method == "lora":  # checked from config.json before the weights are read
            config.lora_targets = peft_targets.check_targets(folder, config.lora_targets)
        try:
            base = tiny_llama.load_pretrained(folder)
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError(str(exc)) from None
        codec = Codec(folder)
        shape = base.shape
        base.gradient_checkpointing = gradient_checkpointing
        if config.method != "fmt":
            base.requires_grad_(False)
            base.to(dtype)
        if config.method == "lora":
            add_lora(base, config.lora_targets, config.pet_size, config.lora_alpha, config.lora_dropout)
        model = NativeTuned(base, config.method, config.pet_size or 0, gen)
    else:
        model, codec, shape = _load_hf(config, folder, dtype, gradient_checkpointing)
    trainable, total = tiny_llama.count_params(model)
    return LoadedModel(model, codec, backend, trainable, total, shape)


def _load_hf(config: TrainConfig, folder: str, dtype: torch.dtype, gradient_checkpointing: bool):
    from transformers import AutoModelForCausalLM

    from ftscale_trainer import peft_targets

    try:
        base = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load model {folder!r}: {exc}") from None
    codec = Codec(folder, prefer_fast_file=False)
    hf = base.config.to_dict()
    shape = tiny_llama.shape_from_hf(hf) if tiny_llama.supports(hf) else None
    if gradient_checkpointing:
        # Non-reentrant checkpointing needs no input that requires grad, so frozen embeddings
        # (LoRA, prompt tuning) work without peft's enable_input_require_grads hook.
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.config.use_cache = False
    if config.method == "fmt":
        return HFTuned(base), codec, shape
    import peft

    if config.method == "lora":
        head = base.get_output_embeddings()
        layers = [n for n, m in base.named_modules() if isinstance(m, nn.Linear) and m is not head]
        config.lora_targets = peft_targets.resolve_targets(layers, config.lora_targets,
                                                           hf.get("model_type"))
        peft_config = peft.LoraConfig(task_type="CAUSAL_LM", r=config.pet_size,
                                      lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                                      target_modules=list(config.lora_targets))
        tuned = peft.get_peft_model(base, peft_config)
    else:
        peft_config = peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=config.pet_size,
                                              prompt_tuning_init=peft.PromptTuningInit.SAMPLE_VOCAB)
        tuned = peft.get_peft_model(base, peft_config)
    for p in tuned.parameters():  # trained tensors in fp32 whatever the frozen weights' dtype
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()
    return HFTuned(tuned, config.pet_size if config.method == "prompt" else 0), codec, shape


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the trainable tensors (the best checkpoint, or what a resume needs)."""
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)
