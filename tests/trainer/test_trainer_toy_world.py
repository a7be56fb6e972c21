"""The offline tiny world (`ftscale toy build`, cached in $FTSCALE_CACHE/toy/): a family that
scales, clean splits, and a toy run through the entry point with its X values filled in.
The first run on a fresh machine builds the world (minutes); later runs reuse the cache."""

import json

import pytest
from conftest import run_trainer

from ftscale_trainer import world

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built():
    from ftscale_trainer import toy

    return toy.build()


def test_family_spans_6x_and_bigger_models_reach_lower_dev_loss(built):
    family = world.family(built)
    sizes = [m.non_embedding_params for m in family]
    assert len(family) >= 3 and sizes == sorted(sizes) and sizes[-1] >= 5.9 * sizes[0]  # 25K → 151K
    final = [m.final.dev_loss for m in family]
    assert final == sorted(final, reverse=True), final
    for m in family:  # more pretraining tokens → lower dev loss, checkpoints ascending
        tokens = [c.tokens for c in m.checkpoints]
        losses = [c.dev_loss for c in m.checkpoints]
        assert tokens == sorted(tokens) and losses == sorted(losses, reverse=True)
        assert (m.final.path + "/config.json") and m.final.tokens == tokens[-1]


def test_splits_do_not_leak_between_tasks(built):
    def docs(task, split):
        with open(world.task_files(task, built)[split], encoding="utf-8") as handle:
            return {json.loads(line)["doc"] for line in handle}
    train_docs = docs("toy-en-de", "train")
    assert not train_docs & docs("toy-en-de", "test")
    assert not train_docs & docs("toy-fr-de", "test")  # zero-shot targets never trained on
    assert len(docs("toy-en-de", "test")) > 100


def test_toy_run_fills_x_values_and_reports_zero_shot(built, tmp_path):
    config = {"study": "toy", "model": "tiny-1", "model_source": "toy:tiny-1@327680", "method": "lora",
              "data_size": 64, "task": "toy-en-de", "max_steps": 8, "eval_interval": 4,
              "dev_examples": 32, "test_examples": 32, "threads": 1,
              "zero_shot": [{"name": "fr-de", "task": "toy-fr-de", "examples": 32}]}
    done, result, message = run_trainer(tmp_path, config)
    assert done.returncode == 0, done.stderr[-2000:]
    tiny1 = world.family(built)[0]
    assert result["model_params"] == tiny1.non_embedding_params
    assert result["pretrain_tokens"] == 327680
    assert set(result["zero_shot"]["fr-de"]) == {"loss", "ppl"}
    assert message["zero_shot"] == result["zero_shot"]


def test_the_build_records_a_learning_rate_per_model_and_method_from_its_dev_sweep(built):
    from ftscale_trainer import toy

    with open(f"{built}/family.json", encoding="utf-8") as handle:
        recorded = {m["name"]: m["finetune"] for m in json.load(handle)["models"]}
    for model in world.family(built):
        assert set(model.learning_rates) == set(toy.SWEEP_RATES)
        for method, rate in model.learning_rates.items():
            entry = recorded[model.name][method]
            assert entry["data_size"] == toy.SWEEP_DATA_SIZE
            losses = {float(r): v for r, v in entry["dev_loss"].items()}
            assert set(losses) == set(toy.SWEEP_RATES[method]) and rate == toy.pick_rate(losses)
