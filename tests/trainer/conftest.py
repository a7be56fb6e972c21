"""Fixtures for the trainer tests: a miniature world built on the fly in a few seconds, so most
tests need neither network nor the cached toy world (`ftscale toy build`).

`mini_world` holds a generated language pair (ftscale_trainer.synthetic) as JSONL, a byte-level
BPE tokenizer trained on it, and a randomly initialised 2-layer Llama in Hugging Face format.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHONPATH = os.pathsep.join([os.path.join(REPO, "operator"), os.path.join(REPO, "trainer_image")])


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from ftscale_trainer import synthetic
    from ftscale_trainer.tiny_llama import LlamaShape

    root = tmp_path_factory.mktemp("mini_world")
    pairs = synthetic.generate_pairs(1200, seed=7)
    en_de = pairs["en-de"]
    _write_jsonl(root / "train.jsonl", en_de[:1000])
    _write_jsonl(root / "dev.jsonl", en_de[1000:1100])
    _write_jsonl(root / "test.jsonl", en_de[1100:1200])
    _write_jsonl(root / "zs-fr-de.jsonl", pairs["fr-de"][1100:1200])

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    texts = [r["source"] for r in en_de] + [r["target"] for r in en_de] + [r["source"] for r in pairs["fr-de"]]
    texts += ["English: German: French: Summarize the following document in Summary:"] * 20
    tok.train_from_iterator(texts, trainer=trainer)
    model_dir = root / "model"
    model_dir.mkdir()
    tok.save(str(model_dir / "tokenizer.json"))
    (model_dir / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
         "pad_token": "<pad>", "unk_token": "<unk>"}))
    shape = LlamaShape(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=88,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4)
    # A few pretraining steps on both languages so that finetuning starts from a model that
    # knows something (prompt tuning on a random model barely moves).
    import numpy as np

    from ftscale_trainer.pretrain import PretrainPlan, pretrain

    ids = []
    for enc in tok.encode_batch(texts):
        ids += enc.ids + [2]
    corpus = np.asarray(ids, dtype=np.uint16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    plan = PretrainPlan(name="mini", shape=shape, tokens=30 * 16 * 64, learning_rate=1e-2,
                        batch_size=16, warmup_steps=5, checkpoint_fractions=(1.0,))
    saved = pretrain(plan, corpus, corpus[-5000:], str(root / "pre"), str(model_dir))
    torch.set_num_threads(threads)
    final = root / "pre" / f"tokens-{saved[-1]['tokens']}"
    for name in ("config.json", "model.safetensors"):
        (model_dir / name).write_bytes((final / name).read_bytes())
    return root


def base_config(world, **overrides):
    """A small, fast run on the mini world; override any TrainConfig field."""
    config = {
        "study": "t", "model": "mini", "model_source": str(world / "model"),
        "method": "lora", "data_size": 200, "seed": 0,
        "train_path": str(world / "train.jsonl"), "dev_path": str(world / "dev.jsonl"),
        "test_path": str(world / "test.jsonl"), "source_lang": "English", "target_lang": "German",
        "max_steps": 12, "eval_interval": 4, "batch_size": 8, "threads": 1,
        "dev_examples": 64, "test_examples": 64,
    }
    config.update(overrides)
    return config


def run_trainer(tmp_path, config, *extra, env=None, timeout=240):
    """Run `python -m ftscale_trainer` as a subprocess (the real entry point). Returns
    (CompletedProcess, full result dict or None, termination message dict or None)."""
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    out = tmp_path / "out"
    term = tmp_path / "termination-log"
    full_env = dict(os.environ, PYTHONPATH=PYTHONPATH, TERMINATION_MESSAGE_PATH=str(term),
                    OMP_NUM_THREADS="1", FTSCALE_ACCELERATE="0")
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-m", "ftscale_trainer", "--config", str(cfg),
                           "--output", str(out), *extra],
                          capture_output=True, text=True, env=full_env, timeout=timeout)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
    message = json.loads(term.read_text()) if term.exists() and term.read_text() else None
    return done, result, message


@pytest.fixture(scope="session")
def hf_checkpoints(mini_world, tmp_path_factory):
    """Tiny random-initialised checkpoints of two real architectures, written by transformers'
    save_pretrained with the mini world's tokenizer (no download): {"llama": folder,
    "gpt_neox": folder}. Both are small enough (~40K parameters) to train in seconds.
    initializer_range 0.2 (not 0.02) gives the random network enough structure for a prompt
    of 8 vectors to move its loss within 12 steps (measured: ≈ 0.4 nats at learning rate 0.3,
    against < 0.05 at 0.02)."""
    import torch
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, LlamaConfig

    vocab = json.loads((mini_world / "model" / "config.json").read_text())["vocab_size"]
    common = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, max_position_embeddings=256, bos_token_id=1,
                  eos_token_id=2, pad_token_id=0, initializer_range=0.2)
    configs = {"llama": LlamaConfig(num_key_value_heads=2, tie_word_embeddings=True, **common),
               "gpt_neox": GPTNeoXConfig(rotary_pct=0.5, tie_word_embeddings=False, **common)}
    root = tmp_path_factory.mktemp("hf_checkpoints")
    folders = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        folder = root / name
        AutoModelForCausalLM.from_config(config).save_pretrained(str(folder))
        for file in ("tokenizer.json", "tokenizer_config.json"):
            (folder / file).write_bytes((mini_world / "model" / file).read_bytes())
        folders[name] = folder
    return folders


def run_in_process(tmp_path, config, monkeypatch, *extra):
    """`python -m ftscale_trainer` through its main() in this process (transformers and peft are
    imported once per test session instead of once per run). Returns (exit code, full result
    text or None, termination message text or None)."""
    from ftscale_trainer.__main__ import main

    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    out, term = tmp_path / "out", tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(term))
    monkeypatch.setenv("FTSCALE_ACCELERATE", "0")
    code = main(["--config", str(cfg), "--output", str(out), *extra])
    full = (out / "result.json").read_text() if (out / "result.json").exists() else None
    return code, full, (term.read_text() if term.exists() else None)
