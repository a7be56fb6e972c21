"""TrainConfig parsing and defaults (torch-free, fast)."""

import json
import os
import subprocess
import sys

import pytest

from ftscale_trainer.config import ConfigError, TrainConfig, defaults_for, eval_steps

GOOD = {"model": "tiny-1", "model_source": "toy:tiny-1", "method": "lora", "data_size": 100,
        "task": "toy-en-de"}


def test_minimal_config_parses_and_resolves_defaults():
    config = TrainConfig.from_dict(GOOD)
    assert config.learning_rate is None
    resolved = config.resolved()
    assert resolved.pet_size == defaults_for("lora")["pet_size"]
    assert resolved.lora_alpha == 2 * resolved.pet_size
    assert resolved.learning_rate == defaults_for("lora")["learning_rate"]


@pytest.mark.parametrize("change, needle", [
    ({"learnig_rate": 0.1}, "did you mean 'learning_rate'"),
    ({"method": "adapter"}, "method must be one of"),
    ({"data_size": 0}, "data_size must be > 0"),
    ({"data_size": "10"}, "data_size must be an integer"),
    ({"data_size": True}, "data_size must be an integer"),
    ({"learning_rate": -1.0}, "learning_rate must be > 0"),
    ({"precision": "fp8"}, "precision must be one of"),
    ({"task": None}, "no data"),
    ({"train_path": "x.jsonl"}, "either `task` or `train_path`"),
    ({"method": "fmt", "pet_size": 4}, "leave it unset for fmt"),
    ({"zero_shot": [{"name": "fr-de"}]}, "exactly one of task or path"),
    ({"zero_shot": [{"name": "a", "task": "toy-fr-de", "lang": "fr"}]}, "unknown zero_shot key"),
    ({"template": "no placeholder"}, "template must be one of"),
    ({"generation": ["bleurt"]}, "generation must be one of"),
])
def test_bad_values_are_rejected_with_a_clear_message(change, needle):
    doc = dict(GOOD, **change)
    with pytest.raises(ConfigError, match=None) as info:
        TrainConfig.from_dict(doc)
    assert needle in str(info.value)


def test_missing_required_key_is_named():
    doc = dict(GOOD)
    del doc["method"]
    with pytest.raises(ConfigError, match="missing required config key.*method"):
        TrainConfig.from_dict(doc)


def test_ints_are_accepted_for_floats():
    assert TrainConfig.from_dict(dict(GOOD, learning_rate=1)).learning_rate == 1.0


def test_defaults_follow_the_paper_for_large_models_and_scale_down_for_tiny_ones():
    big = {m: defaults_for(m, 1_000_000_000) for m in ("fmt", "lora", "prompt")}
    assert (big["prompt"]["learning_rate"], big["prompt"]["batch_size"], big["prompt"]["pet_size"]) == (0.3, 16, 100)
    assert (big["lora"]["learning_rate"], big["lora"]["batch_size"], big["lora"]["pet_size"]) == (1e-2, 16, 4)
    assert (big["fmt"]["learning_rate"], big["fmt"]["batch_size"], big["fmt"]["pet_size"]) == (1e-3, 128, None)
    tiny = defaults_for("prompt", 50_000)
    assert tiny["pet_size"] < 100 and tiny["max_steps"] < big["prompt"]["max_steps"]
    # tiny runs stop at their dev minimum, evaluated per epoch; paper-scale ones every 1000 steps
    assert tiny["early_stopping_patience"] > 0 and big["fmt"]["early_stopping_patience"] == 0
    assert tiny["evals_per_epoch"] > 0 and "eval_interval" not in tiny
    with pytest.raises(ConfigError):
        defaults_for("bogus")


def test_config_and_world_modules_import_without_torch():
    code = ("import sys, ftscale_trainer.config, ftscale_trainer.world;"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    env = dict(os.environ)
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_round_trip_through_json():
    config = TrainConfig.from_dict(dict(GOOD, zero_shot=[{"name": "fr-de", "task": "toy-fr-de"}]))
    again = TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


@pytest.mark.parametrize("save", ["none", "adapter", "model"])
def test_every_study_save_setting_gives_each_method_a_config_the_trainer_accepts(save):
    """execution.save and the new training fields, through grid.trainer_config, for all three
    methods (fmt has no adapter; a prompt cannot be merged into a model)."""
    from ftscale import grid
    from ftscale.spec import load_study

    import yaml

    path = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "demo-study.yaml")
    with open(path, encoding="utf-8") as handle:
        manifest = yaml.safe_load(handle)
    manifest["spec"].setdefault("execution", {})["save"] = save
    manifest["spec"].setdefault("training", {}).update(microBatchSize=4, gradientCheckpointing="true")
    study = load_study(manifest)  # the CRD accepts the new fields
    spec = study.spec
    seen = {}
    for run in grid.expand(spec):
        config = TrainConfig.from_dict(grid.trainer_config(study.name, spec, run)).resolved()
        seen[run.key.method] = config.save
        assert config.micro_batch_size == 4 and config.gradient_checkpointing == "true"
    assert seen == grid.SAVE_BY_METHOD[save]


@pytest.mark.parametrize("data_size, per_epoch, batch, steps", [
    (50, 2, 16, 2), (800, 2, 16, 25), (100, 2, 16, 3), (10, 4, 16, 1), (1000, 1, 128, 8)])
def test_evaluation_spacing_per_epoch_in_whole_steps(data_size, per_epoch, batch, steps):
    assert eval_steps(data_size, per_epoch, batch) == steps


def test_evaluation_spacing_scales_with_the_data_unless_given_in_steps():
    tiny = {d: TrainConfig.from_dict(dict(GOOD, data_size=d)).resolved() for d in (50, 800)}
    assert (tiny[50].eval_interval, tiny[800].eval_interval) == (2, 25)  # half an epoch
    steps = TrainConfig.from_dict(dict(GOOD, data_size=800, eval_interval=7)).resolved()
    assert steps.eval_interval == 7 and steps.evals_per_epoch is None
    mine = TrainConfig.from_dict(dict(GOOD, data_size=800, evals_per_epoch=8,
                                      model_params=10 ** 9)).resolved()
    assert mine.eval_interval == 6  # 800 / 8 / 16: the paper table's 1000 steps does not apply
    # the resolved config reads back as itself (config.json of a run)
    assert TrainConfig.from_dict(mine.to_dict()).resolved() == mine
    with pytest.raises(ConfigError, match="evals_per_epoch must be > 0"):
        TrainConfig.from_dict(dict(GOOD, evals_per_epoch=0))
    with pytest.raises(ConfigError, match="early_stopping_patience must be"):
        TrainConfig.from_dict(dict(GOOD, early_stopping_patience=-1))
