"""End to end with the real trainer: `ftscale run` on a mini study (2 models × FMT, LoRA × 3
data sizes, a few steps each) on CPU, from a study file that names its own data (JSONL) and
its own checkpoints (Hugging Face folders next to the file) — the path a user with their own
models takes. Asserts the results, the report's contents and the fit.

The mini world (a generated language pair, a BPE tokenizer, two briefly pretrained Llama
models of different width) is built here in a few seconds, so the test needs neither network
nor the cached toy world.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def mini_world(tmp_path_factory):
    torch = pytest.importorskip("torch")
    import numpy as np
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from ftscale_trainer import synthetic
    from ftscale_trainer.pretrain import PretrainPlan, pretrain
    from ftscale_trainer.tiny_llama import LlamaShape

    root = tmp_path_factory.mktemp("local_study")
    pairs = synthetic.generate_pairs(900, seed=3)["en-de"]
    _jsonl(root / "data" / "train.jsonl", pairs[:700])
    _jsonl(root / "data" / "dev.jsonl", pairs[700:800])
    _jsonl(root / "data" / "test.jsonl", pairs[800:900])

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [r["source"] for r in pairs] + [r["target"] for r in pairs]
    texts += ["English: German:"] * 10
    tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    ids = []
    for enc in tok.encode_batch(texts):
        ids += enc.ids + [2]
    corpus = np.asarray(ids, dtype=np.uint16)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    params = {}
    for name, hidden in (("small", 16), ("big", 32)):
        folder = root / "checkpoints" / name
        folder.mkdir(parents=True)
        tok.save(str(folder / "tokenizer.json"))
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>",
             "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}))
        shape = LlamaShape(vocab_size=tok.get_vocab_size(), hidden_size=hidden,
                           intermediate_size=hidden * 8 // 3, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=4)
        plan = PretrainPlan(name=name, shape=shape, tokens=30 * 16 * 64, learning_rate=1e-2,
                            batch_size=16, warmup_steps=5, checkpoint_fractions=(1.0,))
        saved = pretrain(plan, corpus, corpus[-4000:], str(root / "pre" / name), str(folder))
        final = root / "pre" / name / f"tokens-{saved[-1]['tokens']}"
        for f in ("config.json", "model.safetensors"):
            (folder / f).write_bytes((final / f).read_bytes())
        params[name] = shape.non_embedding_params()
    torch.set_num_threads(threads)
    return root, params


def test_mini_study_runs_end_to_end_with_the_real_trainer(mini_world):
    root, params = mini_world
    study = {
        "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy",
        "metadata": {"name": "mini-e2e"},
        "spec": {
            "task": {"name": "mini-en-de",
                     "data": {"train": "data/train.jsonl", "dev": "data/dev.jsonl",
                              "test": "data/test.jsonl"},
                     "promptTemplate": "English: {source}\nGerman:",
                     "maxSourceTokens": 32, "maxTargetTokens": 32},
            "models": [{"name": n, "source": f"checkpoints/{n}", "parameters": params[n]}
                       for n in ("small", "big")],
            "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4]}],
            "dataSizes": [50, 100, 200],
            "training": {"maxSteps": 6, "batchSize": 8, "evalInterval": 3, "warmupSteps": 1},
            "evaluation": {"devExamples": 40, "testExamples": 40,
                           "generation": {"metrics": ["bleu"], "maxExamples": 4,
                                          "maxNewTokens": 8}},
            # two model sizes leave nothing to extrapolate to: fit on everything
            "law": {"bootstrap": 0, "heldOut": {"x": "none", "d": "none"}},
            "execution": {"maxParallelRuns": 2},
        },
    }
    (root / "study.yaml").write_text(yaml.safe_dump(study))
    workdir = root / "work"
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}",
               CUDA_VISIBLE_DEVICES="")
    env.pop("FTSCALE_TRAINER_CMD", None)
    done = subprocess.run([sys.executable, "-m", "ftscale", "run", str(root / "study.yaml"),
                           "--workdir", str(workdir), "--parallel", "2"],
                          env=env, capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "12 runs" in text and "12 succeeded, 0 failed" in text

    # results: the contract, real losses, the X values and data sizes asked for
    lines = (workdir / "results.jsonl").read_text().splitlines()
    results = [json.loads(line) for line in lines]
    assert len(results) == 12
    for r in results:
        assert r["outcome"] == "Succeeded" and math.isfinite(r["test_loss"]) and r["test_loss"] > 0
        assert r["model_params"] == params[r["model"]]
        assert r["steps"] <= 6 and r["data_size"] in (50, 100, 200)
        assert "bleu" in r["generation"]
    config = json.loads(next((workdir / "runs").glob("*/config.json")).read_text())
    assert config["train_path"] == str((root / "data" / "train.jsonl").resolve())
    assert config["model_source"].startswith(str((root / "checkpoints").resolve()))

    # the report and the fit
    report = (workdir / "report.md").read_text()
    assert f"report: {(workdir / 'report.md').resolve()}" in text
    assert "12 in the grid, 12 succeeded, 0 failed" in report
    assert "| small |" in report and "| big |" in report and "lora (r=4)" in report
    assert "## Fitted scaling laws" in report and "## Findings" in report
    fit = json.loads((workdir / "fit.json").read_text())
    fitted = {(law["method"], law["factor"], law["form"]) for law in fit["laws"]}
    assert ("fmt", "model_size", "multiplicative") in fitted
    assert ("lora", "model_size", "multiplicative") in fitted
    assert (workdir / "plots" / "methods_per_model.png").exists()

    # a second run is a no-op that re-renders the report
    again = subprocess.run([sys.executable, "-m", "ftscale", "run", str(root / "study.yaml"),
                            "--workdir", str(workdir)], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0 and "12 done" in again.stdout
