"""LoRA target modules that fit the model: resolve and check `lora_targets` from config.json alone.

A study names LoRA targets once per method, but module names differ between architectures
(Llama: q_proj … down_proj; GPT-NeoX: query_key_value, dense, dense_h_to_4h, dense_4h_to_h).
This module lists a checkpoint's linear layers from its config.json without loading weights —
by the known Llama layout for plain Llama configs (no transformers import: a fraction of a
second), else by building the transformers model on the meta device — and resolves a targets list the way peft
matches it: a module matches a target when its dotted name equals the target or ends with
"." + target. Special entries:

* "all-linear" (the default, config.DEFAULT_LORA_TARGETS): the layers peft's keyword of the
  same name picks — every linear layer except the output head, i.e. the attention and
  feed-forward projections, where the paper puts LoRA (§3.3) — written as their last name
  components (q_proj, …), which select exactly those layers (tested against peft);
* "peft-default": peft's per-architecture mapping
  (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`; attention only), "all-linear" for an
  architecture peft has no entry for.

Entry point for preflight checks (the trainer calls it before loading weights too):
`check_targets(config_json_or_folder, targets) -> list[str]` returns the concrete target names
or raises ConfigError naming the model's linear layers. A list may name layers of several
architectures (one study, Llama and Pythia models); it is rejected only when nothing matches.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ftscale_trainer.config import ALL_LINEAR, DEFAULT_LORA_TARGETS, PEFT_DEFAULT, ConfigError

_LLAMA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_LLAMA_MLP = ("gate_proj", "up_proj", "down_proj")


def read_config(config_json_or_folder: str | dict[str, Any]) -> dict[str, Any]:
    """A config.json as a dict: given a dict, a config.json path or a model folder."""
    if isinstance(config_json_or_folder, dict):
        return config_json_or_folder
    path = config_json_or_folder
    if os.path.isdir(path):
        path = os.path.join(path, "config.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the model's config.json at {path}: {exc}") from None


def linear_layers(hf_config: dict[str, Any]) -> list[str]:
    """Dotted names of the linear layers LoRA can adapt (every nn.Linear or GPT-2-style Conv1D
    except the output head), in module order. Raises ConfigError for a config transformers
    cannot build."""
    from ftscale_trainer import tiny_llama

    if tiny_llama.supports(hf_config):
        # The native Llama uses transformers' names (tested), so no import is needed here.
        return [f"model.layers.{i}.{part}.{name}"
                for i in range(hf_config["num_hidden_layers"])
                for part, names in (("self_attn", _LLAMA_ATTENTION), ("mlp", _LLAMA_MLP))
                for name in names]
    return _meta_linear_layers(hf_config)


def _meta_linear_layers(hf_config: dict[str, Any]) -> list[str]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.pytorch_utils import Conv1D

    doc = dict(hf_config)
    model_type = doc.pop("model_type", None)
    if not model_type:
        raise ConfigError("the model's config.json has no model_type; cannot list its layers")
    try:
        config = AutoConfig.for_model(model_type, **doc)
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            model = AutoModelForCausalLM.from_config(config)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"transformers cannot build a {model_type!r} causal LM from its "
                          f"config.json: {exc}") from None
    head = model.get_output_embeddings()
    return [name for name, module in model.named_modules()
            if isinstance(module, (torch.nn.Linear, Conv1D)) and module is not head]


def matches(module_name: str, target: str) -> bool:
    """peft's rule for a list of target names."""
    return module_name == target or module_name.endswith("." + target)


def _peft_default(model_type: str | None) -> list[str] | None:
    try:  # the constant's name and place have moved between peft versions
        from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    except ImportError:
        from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as table
    found = table.get(model_type or "")
    return list(found) if found else None


def resolve_targets(layers: list[str], targets: list[str] | None,
                    model_type: str | None = None) -> list[str]:
    """Concrete target names for a model with these linear `layers`: special entries expanded,
    names that match no layer dropped. Raises ConfigError, naming the layers, when none match."""
    wanted = list(DEFAULT_LORA_TARGETS if targets is None else targets)
    suffixes = list(dict.fromkeys(name.rsplit(".", 1)[-1] for name in layers))
    expanded: list[str] = []
    for target in wanted:
        if target == ALL_LINEAR:
            expanded += suffixes
        elif target == PEFT_DEFAULT:
            expanded += _peft_default(model_type) or suffixes
        else:
            expanded.append(target)
    found = [t for t in dict.fromkeys(expanded) if any(matches(name, t) for name in layers)]
    if not found:
        raise ConfigError(f"lora_targets {wanted} match no linear layer of this "
                          f"{model_type or 'model'}; its linear layers are {suffixes} "
                          f"(e.g. {layers[0] if layers else 'none'}); set methods[].loraTargets "
                          f"to some of them or leave it unset for {list(DEFAULT_LORA_TARGETS)}")
    return found


def check_targets(config_json_or_folder: str | dict[str, Any], targets: list[str] | None) -> list[str]:
    """Resolve `targets` (None = the default) against a model's config.json without loading its
    weights. Returns the concrete target names; raises ConfigError when none matches or the
    config cannot be read."""
    hf_config = read_config(config_json_or_folder)
    return resolve_targets(linear_layers(hf_config), targets, hf_config.get("model_type"))
