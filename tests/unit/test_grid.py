"""Grid expansion: the runs a spec asks for, their stable ids, and the fit's factor groups."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from ftscale import grid
from ftscale.identity import RunKey, run_id
from ftscale.spec import load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

BASE = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "g"},
    "spec": {
        "task": {"name": "toy-en-de"},
        "models": [{"name": "a", "source": "toy:a"}, {"name": "b", "source": "toy:b"},
                   {"name": "c", "source": "toy:c"}],
        "methods": [{"name": "fmt"}, {"name": "lora", "sizes": [4, 16]},
                    {"name": "prompt", "sizes": [10]}],
        "dataSizes": [100, 200, 400],
        "seeds": [0, 1],
    },
}


def spec(**edits):
    doc = copy.deepcopy(BASE)
    doc["spec"].update(edits)
    return load_study(doc).spec


def ids(runs):
    return [r.run_id for r in runs]


def test_full_product_in_spec_order():
    runs = grid.expand(spec())
    # 3 models × (fmt + 2 lora ranks + 1 prompt length) × 3 data sizes × 2 seeds
    assert len(runs) == 3 * 4 * 3 * 2
    assert runs[0].key == RunKey("a", "fmt", None, 100, 0)
    assert runs[1].key == RunKey("a", "fmt", None, 100, 1)
    assert len(set(ids(runs))) == len(runs)
    assert all(r.run_id == run_id(r.key) for r in runs)


def test_ids_do_not_change_when_unrelated_fields_change():
    before = ids(grid.expand(spec()))
    after = ids(grid.expand(spec(
        training={"learningRate": 0.5, "maxSteps": 3},
        execution={"image": "other:1", "maxParallelRuns": 1, "gpusPerRun": 2},
        law={"bootstrap": 0, "forms": ["additive"]},
        evaluation={"generation": {"metrics": ["bleu"]}},
        task={"name": "toy-en-fr"},
    )))
    assert before == after


def test_growing_the_study_only_adds_runs():
    before = set(ids(grid.expand(spec())))
    grown = spec(dataSizes=[100, 200, 400, 800], seeds=[0, 1, 2],
                 models=BASE["spec"]["models"] + [{"name": "d", "source": "toy:d"}])
    after = set(ids(grid.expand(grown)))
    assert before < after
    # reordering lists changes the order of runs, not their ids
    shuffled = spec(dataSizes=[400, 100, 200], seeds=[1, 0],
                    models=list(reversed(BASE["spec"]["models"])))
    assert set(ids(grid.expand(shuffled))) == before


def test_size_sweep_models_and_method_data_sizes_prune_the_grid():
    s = spec(methods=[{"name": "fmt", "dataSizes": [1000, 2000]},
                      {"name": "lora", "sizes": [4, 16, 64], "sizeSweepModels": ["b"]}])
    runs = grid.expand(s)
    fmt = [r for r in runs if r.key.method == "fmt"]
    lora = [r for r in runs if r.key.method == "lora"]
    assert {r.key.data_size for r in fmt} == {1000, 2000}
    assert len(fmt) == 3 * 2 * 2
    assert {(r.key.model, r.key.pet_size) for r in lora} == {
        ("a", 4), ("b", 4), ("b", 16), ("b", 64), ("c", 4)}
    assert len(lora) == 5 * 3 * 2


def test_training_layers_and_resources_merge():
    s = spec(training={"learningRate": 0.1, "maxSteps": 5},
             methods=[{"name": "lora", "sizes": [4], "training": {"learningRate": 0.01,
                                                                   "learningRateScale": 2}}],
             models=[{"name": "a", "source": "toy:a", "gpus": 2,
                      "training": {"learningRateScale": 0.25, "batchSize": 8},
                      "resources": {"limits": {"memory": "8Gi"}}}],
             execution={"gpusPerRun": 1, "resources": {"requests": {"cpu": "1"},
                                                       "limits": {"memory": "4Gi"}}})
    run = grid.expand(s)[0]
    assert run.training == {"learningRate": 0.01, "maxSteps": 5, "batchSize": 8,
                            "learningRateScale": 0.5}
    assert run.gpus == 2
    assert run.resources == {"requests": {"cpu": "1"}, "limits": {"memory": "8Gi"}}


def test_trainer_config_carries_the_run_and_its_settings():
    s = spec(models=[{"name": "a", "source": "toy:a", "parameters": 1000,
                      "pretrainingTokens": 5000, "training": {"learningRateScale": 0.5}}],
             methods=[{"name": "lora", "sizes": [4], "loraAlpha": 16,
                       "training": {"learningRate": 0.01}}],
             training={"maxSteps": 7, "evalInterval": 2},
             evaluation={"generation": {"metrics": ["bleu"], "maxExamples": 5},
                         "zeroShot": ["toy-fr-de"], "testExamples": 9})
    run = grid.expand(s)[0]
    cfg = grid.trainer_config("g", s, run)
    assert cfg["study"] == "g" and cfg["run_id"] == run.run_id
    assert (cfg["model"], cfg["method"], cfg["pet_size"], cfg["data_size"], cfg["seed"]) == (
        "a", "lora", 4, 100, 0)
    assert cfg["model_source"] == "toy:a" and cfg["task"] == "toy-en-de"
    assert cfg["model_params"] == 1000 and cfg["pretrain_tokens"] == 5000
    assert cfg["lora_alpha"] == 16
    assert cfg["learning_rate"] == 0.005  # 0.01 × the model's learningRateScale
    assert cfg["max_steps"] == 7 and cfg["eval_interval"] == 2
    assert cfg["generation"] == ["bleu"] and cfg["generation_examples"] == 5
    assert cfg["zero_shot"] == [{"name": "toy-fr-de", "task": "toy-fr-de"}]
    assert cfg["test_examples"] == 9


def test_trainer_config_resolves_volume_paths():
    s = spec(task={"name": "mt", "data": {"train": "t.jsonl", "dev": "d.jsonl",
                                          "test": "sub/x.jsonl", "format": "hf-disk"}},
             models=[{"name": "a", "source": "org/model"}],
             methods=[{"name": "fmt"}],
             execution={"volumes": {"models": {"claimName": "m", "mountPath": "/ckpt"},
                                    "data": {"claimName": "d"}}})
    cfg = grid.trainer_config("g", s, grid.expand(s)[0])
    assert cfg["model_source"] == "/ckpt/org/model"
    assert (cfg["train_path"], cfg["dev_path"], cfg["test_path"]) == (
        "/data/t.jsonl", "/data/d.jsonl", "/data/sub/x.jsonl")
    assert cfg["data_format"] == "hf_disk" and "task" not in cfg
    local = grid.trainer_config("g", s, grid.expand(s)[0], data_root="/home/me/study",
                                models_root="/home/me/models")
    assert local["train_path"] == "/home/me/study/t.jsonl"
    assert local["model_source"] == "/home/me/models/org/model"


def test_learning_rate_scale_without_a_rate_is_an_error():
    s = spec(models=[{"name": "a", "source": "toy:a", "training": {"learningRateScale": 2}}])
    with pytest.raises(grid.GridError, match="learningRateScale needs a learningRate"):
        grid.trainer_config("g", s, grid.expand(s)[0])


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_trainer_accepts_the_config_of_every_run_of_every_example(path):
    """Contract with the trainer: its own config parser accepts what the grid writes."""
    config = pytest.importorskip("ftscale_trainer.config")
    study = load_study(path)
    for run in grid.expand(study.spec):
        config.TrainConfig.from_dict(grid.trainer_config(study.name, study.spec, run))


def test_factor_membership_follows_the_paper():
    s = spec(models=[{"name": "a", "source": "toy:a"}, {"name": "b", "source": "toy:b"},
                     {"name": "b-early", "source": "toy:b@10", "checkpointOf": "b"},
                     {"name": "b-mid", "source": "toy:b@20", "checkpointOf": "b"}],
             methods=[{"name": "fmt"}, {"name": "lora", "sizes": [4, 16]}],
             seeds=[0])
    runs = grid.expand(s)
    groups = grid.factor_membership(s, runs)
    by_id = {r.run_id: r.key for r in runs}

    def keys(method, factor):
        return {(by_id[i].model, by_id[i].pet_size) for i in groups[method][factor]}

    assert keys("fmt", "model_size") == {("a", None), ("b", None)}
    assert keys("fmt", "pretrain_tokens") == {("b", None), ("b-early", None), ("b-mid", None)}
    assert "pet_size" not in groups["fmt"]
    assert keys("lora", "model_size") == {("a", 4), ("b", 4)}
    assert keys("lora", "pet_size") == {("b", 4), ("b", 16)}  # the chain's base sweeps sizes
    # every data size is in every group
    assert len(groups["lora"]["pet_size"]) == 2 * 3


def test_factor_membership_skips_sweeps_with_one_value_and_unwanted_factors():
    s = spec(models=[{"name": "a", "source": "toy:a"}], law={"factors": ["petSize"]})
    groups = grid.factor_membership(s, grid.expand(s))
    assert groups == {"lora": {"pet_size": groups["lora"]["pet_size"]}}
    # accepts result rows too
    rows = [{"model": "a", "method": "lora", "pet_size": p, "data_size": 100, "seed": 0}
            for p in (4, 16)]
    assert len(grid.factor_membership(s, rows)["lora"]["pet_size"]) == 2


def test_law_options_spec_speaks_the_law_engines_keys():
    s = spec(law={"stage1Factors": ["modelSize"], "heldOut": {
        "d": "none", "factors": {"pretrainingTokens": {"x": "209e9"}}}})
    law = grid.law_options_spec(s)
    assert "factors" not in law and law["stage1Factors"] == ["model_size"]
    assert law["heldOut"] == {"x": "largest", "d": "none",
                              "factors": {"pretrain_tokens": {"x": "209e9"}}}
    options = pytest.importorskip("ftscale.law.options")
    parsed = options.LawOptions.from_spec(law)
    assert parsed.holdout.for_factor("pretrain_tokens")[0].values == (209e9,)
    assert parsed.holdout.d.mode == "none" and parsed.confidence == 0.95


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_law_engine_accepts_the_law_settings_of_every_example(path):
    options = pytest.importorskip("ftscale.law.options")
    options.LawOptions.from_spec(grid.law_options_spec(load_study(path).spec))
