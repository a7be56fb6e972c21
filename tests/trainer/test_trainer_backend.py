"""Which backend `backend: auto` picks: the native path only for small plain-Llama checkpoints;
real (large) checkpoints and other architectures go through transformers + peft."""

import json
from types import SimpleNamespace

import pytest

from ftscale_trainer import models
from ftscale_trainer.tiny_llama import LlamaShape

AUTO = SimpleNamespace(backend="auto")


def write_config(folder, **over):
    doc = LlamaShape(vocab_size=2048, hidden_size=64, intermediate_size=172, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4).hf_config()
    doc.update(over)
    (folder / "config.json").write_text(json.dumps(doc))
    return str(folder)


def test_small_llama_takes_the_native_path(tmp_path):
    assert models.resolve_backend(AUTO, write_config(tmp_path)) == "native"


def test_a_real_sized_llama_takes_transformers_and_peft(tmp_path):
    # Llama-2-7B's shape: 6.7B parameters.
    folder = write_config(tmp_path, vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                          num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                          head_dim=128)
    assert models.resolve_backend(AUTO, folder) == "hf"


@pytest.mark.parametrize("over", [dict(model_type="gpt_neox"), dict(hidden_act="gelu"),
                                  dict(attention_bias=True)])
def test_other_architectures_take_transformers_and_peft(tmp_path, over):
    assert models.resolve_backend(AUTO, write_config(tmp_path, **over)) == "hf"


def test_no_local_config_means_a_hub_id_for_transformers(tmp_path):
    assert models.resolve_backend(AUTO, str(tmp_path / "missing")) == "hf"


def test_an_explicit_backend_is_kept(tmp_path):
    folder = write_config(tmp_path)
    assert models.resolve_backend(SimpleNamespace(backend="hf"), folder) == "hf"
