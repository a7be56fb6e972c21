"""Saving the selected weights in formats users load with transformers and peft.

`save: adapter` (the default for LoRA and prompt tuning) writes peft's `save_pretrained`
layout — adapter_config.json + adapter_model.safetensors — so that
`PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder)` gives the
run's final model. The hf backend calls peft itself; the native backend writes the same files
with peft's key names (`base_model.model.<module>.lora_A.weight`, `prompt_embeddings`), and a
test loads them with peft. `save: model` writes a full transformers checkpoint (config.json +
model.safetensors + the tokenizer): the finetuned weights for fmt, the base with the LoRA
product merged in for LoRA (a prompt cannot be merged; config.validate rejects that).
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import torch
from torch import nn

from ftscale_trainer import models, tiny_llama
from ftscale_trainer.config import TrainConfig

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def save(model: nn.Module, codec: models.Codec, config: TrainConfig, folder: str,
         base_folder: str) -> None:
    """Write `config.save` ("adapter" or "model") of the unwrapped `model` to `folder`.
    `base_folder` is recorded as the adapter's base_model_name_or_path."""
    os.makedirs(folder, exist_ok=True)
    if isinstance(model, models.HFTuned):
        _save_hf(model, codec, config, folder)
    elif config.save == "adapter":
        state = native_adapter_state(model)
        from safetensors.torch import save_file

        save_file(state, os.path.join(folder, ADAPTER_WEIGHTS), metadata={"format": "pt"})
        with open(os.path.join(folder, ADAPTER_CONFIG), "w", encoding="utf-8") as handle:
            json.dump(native_adapter_config(model, config, base_folder), handle, indent=2,
                      sort_keys=True)
    else:
        tiny_llama.save_pretrained(merged_native(model), folder)
        for name in TOKENIZER_FILES:
            if os.path.exists(os.path.join(base_folder, name)):
                shutil.copyfile(os.path.join(base_folder, name), os.path.join(folder, name))


def _save_hf(model: models.HFTuned, codec: models.Codec, config: TrainConfig, folder: str) -> None:
    inner = model.inner
    if config.save == "adapter":
        inner.save_pretrained(folder)  # a PeftModel: peft's own layout
        return
    if config.method == "lora":
        # Folds B·A·scale into the weights and drops the adapter modules, in place: this is
        # the last use of the model in the run.
        inner = inner.merge_and_unload()
    inner.save_pretrained(folder)
    if codec.hf_tokenizer is not None:
        codec.hf_tokenizer.save_pretrained(folder)


def native_adapter_state(model: models.NativeTuned) -> dict[str, torch.Tensor]:
    """The trained tensors under the names peft's get_peft_model_state_dict gives them."""
    if model.method == "prompt":
        return {"prompt_embeddings": model.soft_prompt.detach().float().contiguous().cpu()}
    state = {}
    for name, param in model.named_parameters():
        if param.requires_grad:  # base.<LlamaForCausalLM name>.lora_A.weight
            state["base_model.model." + name.removeprefix("base.")] = param.detach().contiguous().cpu()
    return state


def native_adapter_config(model: models.NativeTuned, config: TrainConfig,
                          base_folder: str) -> dict:
    """adapter_config.json as peft writes it for the same adapter (the fields peft reads;
    the rest take peft's defaults when loaded)."""
    doc = {"task_type": "CAUSAL_LM", "base_model_name_or_path": base_folder,
           "inference_mode": True, "revision": None}
    shape = model.base.shape
    if model.method == "prompt":
        # The trained vectors are loaded over whatever the init would give, so RANDOM (which
        # needs no tokenizer) loads them exactly as SAMPLE_VOCAB did.
        doc.update(peft_type="PROMPT_TUNING", num_virtual_tokens=model.prompt_len,
                   token_dim=shape.hidden_size, num_transformer_submodules=1,
                   num_attention_heads=shape.num_attention_heads,
                   num_layers=shape.num_hidden_layers, prompt_tuning_init="RANDOM")
    else:
        doc.update(peft_type="LORA", r=config.pet_size, lora_alpha=config.lora_alpha,
                   lora_dropout=config.lora_dropout, target_modules=sorted(config.lora_targets),
                   bias="none", fan_in_fan_out=False, init_lora_weights=True,
                   modules_to_save=None, use_rslora=False, use_dora=False)
    return doc


def merged_native(model: models.NativeTuned) -> tiny_llama.LlamaLM:
    """A plain fp32 LlamaLM with each LoRA product added into its base weight (fmt: the
    finetuned model itself)."""
    base = copy.deepcopy(model.base).float()
    for name, module in list(base.named_modules()):
        if isinstance(module, models.LoraLinear):
            linear = module.base
            with torch.no_grad():
                linear.weight += (module.lora_B.weight @ module.lora_A.weight) * module.scaling
            parent_name, _, attr = name.rpartition(".")
            setattr(base.get_submodule(parent_name), attr, linear)
    return base
