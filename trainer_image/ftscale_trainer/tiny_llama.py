"""A pure-torch Llama decoder that reads and writes Hugging Face `LlamaForCausalLM` checkpoints.

Why not transformers' own class: importing transformers + peft costs 7–12 s of CPU on the
2-core machines the demo runs on, more than a whole toy finetuning run. This module imports only
torch and safetensors, computes exactly what `LlamaForCausalLM` computes (RMSNorm, rotary
embeddings in the rotate-half layout, SwiGLU MLP, grouped-query attention, optional tied
embeddings) and uses the same parameter names, so the checkpoints the toy world writes load in
transformers unchanged and a test checks that both give the same logits.

Out of scope (the trainer falls back to transformers for these): rope scaling, attention or MLP
biases, sliding windows — `supports(config)` says whether a config.json fits.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class LlamaShape:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True
    bos_token_id: int = 1
    eos_token_id: int = 2
    pad_token_id: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    def non_embedding_params(self) -> int:
        """Parameters outside the token embedding and LM head (the paper's model size)."""
        d, f, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        per_layer = d * d * 2 + d * kv * 2 + 3 * d * f + 2 * d  # q,o + k,v + MLP + 2 norms
        return self.num_hidden_layers * per_layer + d  # + final norm

    def hf_config(self) -> dict:
        doc = asdict(self)
        doc.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                   attention_bias=False, mlp_bias=False, head_dim=self.head_dim,
                   initializer_range=0.02, torch_dtype="float32", use_cache=True)
        return doc


_SUPPORTED_ACT = ("silu",)
_META_ABOVE = 50_000_000  # parameters above which load_pretrained builds on the meta device


def supports(hf_config: dict) -> bool:
    """True when a Hugging Face config.json describes a model this module computes exactly."""
    return (
        hf_config.get("model_type") == "llama"
        and hf_config.get("hidden_act", "silu") in _SUPPORTED_ACT
        and not hf_config.get("attention_bias", False)
        and not hf_config.get("mlp_bias", False)
        and not hf_config.get("rope_scaling")
        and hf_config.get("head_dim") in (None, hf_config["hidden_size"] // hf_config["num_attention_heads"])
        and hf_config.get("pretraining_tp", 1) == 1
    )


def shape_from_hf(hf_config: dict) -> LlamaShape:
    names = set(LlamaShape.__dataclass_fields__)
    doc = {k: v for k, v in hf_config.items() if k in names}
    doc.setdefault("num_key_value_heads", hf_config["num_attention_heads"])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if isinstance(doc.get(key), list):
            doc[key] = doc[key][0]
        if doc.get(key) is None:
            doc.pop(key, None)
    if "rope_theta" not in doc and isinstance(hf_config.get("rope_parameters"), dict):
        doc["rope_theta"] = hf_config["rope_parameters"].get("rope_theta", 10000.0)
    return LlamaShape(**doc)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rotary_tables(shape: LlamaShape, positions: torch.Tensor, dtype: torch.dtype):
    """cos/sin of shape [batch, seq, head_dim] for the given positions (HF's layout)."""
    inv_freq = 1.0 / (shape.rope_theta ** (
        torch.arange(0, shape.head_dim, 2, dtype=torch.int64, device=positions.device).float()
        / shape.head_dim))
    freqs = positions.float()[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.s = s
        hd = s.head_dim
        self.q_proj = nn.Linear(s.hidden_size, s.num_attention_heads * hd, bias=False)
        self.k_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * hd, bias=False)
        self.v_proj = nn.Linear(s.hidden_size, s.num_key_value_heads * hd, bias=False)
        self.o_proj = nn.Linear(s.num_attention_heads * hd, s.hidden_size, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        hd = self.s.head_dim
        q = self.q_proj(x).view(b, t, -1, hd).transpose(1, 2)
        k = self.k_proj(x).view(b, t, -1, hd).transpose(1, 2)
        v = self.v_proj(x).view(b, t, -1, hd).transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        groups = self.s.num_attention_heads // self.s.num_key_value_heads
        if groups > 1:
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.o_proj(out.transpose(1, 2).reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.gate_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.up_proj = nn.Linear(s.hidden_size, s.intermediate_size, bias=False)
        self.down_proj = nn.Linear(s.intermediate_size, s.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nn.Module):
    def __init__(self, s: LlamaShape):
        super().__init__()
        self.self_attn = Attention(s)
        self.mlp = MLP(s)
        self.input_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(s.hidden_size, s.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    """`model.*` of LlamaForCausalLM: embeddings, layers, final norm."""

    def __init__(self, s: LlamaShape):
        super().__init__()
        self.embed_tokens = nn.Embedding(s.vocab_size, s.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(s) for _ in range(s.num_hidden_layers))
        self.norm = RMSNorm(s.hidden_size, s.rms_norm_eps)


class LlamaLM(nn.Module):
    """Causal LM with HF Llama parameter names. `hidden()` returns final-norm states so callers
    can apply the LM head to the few positions that carry loss (the head dominates tiny models)."""

    def __init__(self, shape: LlamaShape):
        super().__init__()
        self.shape = shape
        self.model = Backbone(shape)
        self.lm_head = nn.Linear(shape.hidden_size, shape.vocab_size, bias=False)
        if shape.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        # Recompute each layer in the backward pass instead of keeping its activations
        # (memory for compute, as transformers' gradient_checkpointing_enable does).
        self.gradient_checkpointing = False

    def init_weights(self, generator: torch.Generator | None = None, std: float = 0.02) -> None:
        """Fresh weights as HF initialises Llama (normal(0, std), norms at 1); for pretraining."""
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                with torch.no_grad():
                    p.normal_(0.0, std, generator=generator)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_tokens(input_ids)

    def hidden(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None = None,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states [B, T, d] for embedded inputs.

        attention_mask: [B, T] with 1 for real tokens, or None when there is no left padding
        (right padding needs no mask under causal attention: real tokens never see later pads).
        """
        b, t, _ = inputs_embeds.shape
        if position_ids is None:
            if attention_mask is not None:
                position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            else:
                position_ids = torch.arange(t, device=inputs_embeds.device).expand(b, t)
        cos, sin = rotary_tables(self.shape, position_ids, inputs_embeds.dtype)
        mask = None
        if attention_mask is not None:
            causal = torch.ones(t, t, dtype=torch.bool, device=inputs_embeds.device).tril()
            mask = causal[None, None] & attention_mask.bool()[:, None, None, :]
            # A fully masked row (left padding) would give NaN; let it see itself.
            mask = mask | torch.eye(t, dtype=torch.bool, device=mask.device)[None, None]
        x = inputs_embeds
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        if recompute:  # imported here: torch.utils.checkpoint costs start-up a toy run skips
            from torch.utils.checkpoint import checkpoint
        for layer in self.model.layers:
            if recompute:
                x = checkpoint(layer, x, cos, sin, mask, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask)
        return self.model.norm(x)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
        """Logits [B, T, V] (what LlamaForCausalLM(...).logits gives)."""
        return self.lm_head(self.hidden(self.embed(input_ids), attention_mask))


# ---- Hugging Face format I/O -------------------------------------------------------------------
def save_pretrained(model: LlamaLM, folder: str) -> None:
    """Write config.json + model.safetensors as transformers' save_pretrained does for Llama."""
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as handle:
        json.dump(model.shape.hf_config(), handle, indent=2, sort_keys=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if model.shape.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: HF stores it once, under the embedding
    save_file(state, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})


def read_hf_config(folder: str) -> dict:
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
        return json.load(handle)


def load_pretrained(folder: str) -> LlamaLM:
    """Load a Llama checkpoint folder (model.safetensors, possibly sharded). Raises ValueError
    when the architecture is not one `supports()` accepts, FileNotFoundError without weights."""
    from safetensors.torch import load_file

    hf = read_hf_config(folder)
    if not supports(hf):
        raise ValueError(f"{folder}: not a plain Llama checkpoint; use backend 'hf'")
    shape = shape_from_hf(hf)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no .safetensors weights")
    state = {}
    for name in files:
        state.update(load_file(os.path.join(folder, name)))
    if shape.non_embedding_params() + shape.vocab_size * shape.hidden_size < _META_ABOVE:
        model = LlamaLM(shape)  # small: a throw-away random init costs less than the meta path
    else:
        # Large: skip the random init. (The meta device imports torch._dynamo on first use,
        # seconds of start-up that a toy run cannot afford, hence only here.)
        with torch.device("meta"):
            model = LlamaLM(shape)
        model = model.to_empty(device="cpu")
    if shape.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
        state.pop("lm_head.weight", None)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [m for m in missing if m != "lm_head.weight"]
    else:
        missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{folder}: weights do not match config (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")
    return model


def flops_per_token(shape: LlamaShape, seq_len: int) -> float:
    """Training FLOPs per token (6·N plus attention), for MFU: Kaplan et al.'s estimate."""
    n = shape.non_embedding_params() + shape.vocab_size * shape.hidden_size
    attn = 12 * shape.num_hidden_layers * shape.hidden_size * seq_len
    return 6.0 * n + attn


def count_params(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique parameters, as peft's get_nb_trainable_parameters counts."""
    trainable = total = 0
    for p in module.parameters():  # parameters() deduplicates tied weights
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
