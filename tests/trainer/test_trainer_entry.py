"""The real entry point (`python -m ftscale_trainer`) on the mini world: each method trains,
tokens are counted exactly, results are deterministic, bad configs exit 2, and the compact
result stays inside the termination-message bound. These spawn the trainer as a subprocess,
as `ftscale run` and the Job do."""

import json
import math

import pytest
from conftest import base_config, run_trainer

from ftscale.results import COMPACT_LIMIT, INVALID_CONFIG, parse_result

pytestmark = pytest.mark.slow

# Paper-style learning rates for each method on the mini model (prompt tuning needs a high one).
METHOD_LR = {"fmt": 3e-3, "lora": 1e-2, "prompt": 0.3}


@pytest.fixture(scope="module")
def method_runs(mini_world, tmp_path_factory):
    runs = {}
    for method, lr in METHOD_LR.items():
        tmp = tmp_path_factory.mktemp(method)
        config = base_config(mini_world, method=method, learning_rate=lr, log_interval=1)
        runs[method] = run_trainer(tmp, config)
    return runs


@pytest.mark.parametrize("method", list(METHOD_LR))
def test_each_method_trains_with_finite_decreasing_loss(method_runs, method):
    done, result, message = method_runs[method]
    assert done.returncode == 0, done.stderr[-2000:]
    assert result["outcome"] == "Succeeded" and result["method"] == method
    train = [loss for _, loss in result["curves"]["train"]]
    assert len(train) == 12 and all(math.isfinite(x) for x in train)
    assert sum(train[-3:]) / 3 < sum(train[:3]) / 3, train
    dev = [loss for _, loss in result["curves"]["dev"]]
    assert min(dev) < dev[0] or result["best_step"] > 4
    assert result["best_dev_loss"] == pytest.approx(min(dev))
    assert math.isfinite(result["test_loss"]) and result["test_ppl"] == pytest.approx(math.exp(result["test_loss"]))
    # The termination message is the compact form of the same result.
    assert message == json.loads(parse_result(json.dumps(message)).to_compact_json())
    assert message["test_loss"] == result["test_loss"]


def test_pet_methods_train_far_fewer_parameters_than_fmt(method_runs):
    counts = {m: method_runs[m][1]["trainable_params"] for m in METHOD_LR}
    totals = {m: method_runs[m][1]["total_params"] for m in METHOD_LR}
    assert counts["fmt"] == totals["fmt"]
    assert counts["lora"] < counts["fmt"] / 5 and counts["prompt"] < counts["fmt"] / 50
    # LoRA r=4 on q,k,v,o (32→32) and gate,up (32→88), down (88→32), 2 layers: r·(in+out) each.
    assert counts["lora"] == 2 * 4 * (4 * (32 + 32) + 3 * (32 + 88))
    assert counts["prompt"] == 8 * 32  # |P| = 8 (tiny default) × hidden 32
    assert totals["lora"] == totals["fmt"] + counts["lora"]


def test_tokens_are_counted_exactly(mini_world, tmp_path):
    # data_size = batch · steps: every example is seen exactly once, whatever the order.
    from tokenizers import Tokenizer

    config = base_config(mini_world, method="lora", data_size=96, batch_size=8, max_steps=12)
    done, result, _ = run_trainer(tmp_path, config)
    assert done.returncode == 0, done.stderr[-2000:]
    from ftscale_trainer import data
    from ftscale_trainer.config import TrainConfig

    examples = data.subset(data.load_examples(str(mini_world / "train.jsonl"), "jsonl", "source", "target"),
                           96, seed=0)
    tok = Tokenizer.from_file(str(mini_world / "model" / "tokenizer.json"))
    cfg = TrainConfig.from_dict(config)
    expected = 0
    for e in examples:
        prompt = f"English: {e.source}\nGerman:"
        src = 1 + len(tok.encode(prompt, add_special_tokens=False).ids)
        tgt = len(tok.encode(" " + e.target, add_special_tokens=False).ids) + 1
        expected += min(src, cfg.max_source_tokens) + min(tgt, cfg.max_target_tokens)
    assert result["tokens_seen"] == expected
    assert result["steps"] == 12


def test_same_seed_same_result_and_another_seed_differs(mini_world, method_runs, tmp_path):
    config = base_config(mini_world, method="lora", learning_rate=METHOD_LR["lora"], log_interval=1)
    again = run_trainer(tmp_path / "a", config)[1] if (tmp_path / "a").mkdir() is None else None
    first = method_runs["lora"][1]
    assert again["test_loss"] == first["test_loss"]
    assert again["curves"]["train"] == first["curves"]["train"]
    (tmp_path / "b").mkdir()
    other = run_trainer(tmp_path / "b", dict(config, seed=1))[1]
    assert other["test_loss"] != first["test_loss"]
    assert other["run_id"] != first["run_id"]


@pytest.mark.parametrize("change, needle", [
    ({"bogus_key": 1}, "unknown config key"),
    ({"method": "adapter"}, "method must be one of"),
    ({"model_source": "/nonexistent/model"}, "/nonexistent/model"),
    ({"data_size": 5000}, "exceeds the 1000 training examples"),
    ({"model_source": "toy:no-such-model"}, "toy"),
])
def test_bad_configs_exit_2_with_a_clear_message_and_a_failed_result(mini_world, tmp_path, change, needle):
    done, _, message = run_trainer(tmp_path, base_config(mini_world, **change))
    assert done.returncode == 2, done.stderr[-2000:]
    assert needle in done.stderr
    assert message["outcome"] == "Failed" and message["reason"] == INVALID_CONFIG
    assert needle in message["message"]


def test_compact_result_with_generation_and_zero_shot_stays_small(mini_world, tmp_path):
    config = base_config(mini_world, method="fmt", generation=["bleu", "rougeL"], generation_examples=16,
                         max_new_tokens=16, zero_shot=[
                             {"name": "fr-de", "path": str(mini_world / "zs-fr-de.jsonl"),
                              "source_lang": "French", "examples": 32}])
    done, result, message = run_trainer(tmp_path, config)
    assert done.returncode == 0, done.stderr[-2000:]
    scores = {f"{m}{part}" for m in ("bleu", "rougeL") for part in ("", "_n", "_ci_low", "_ci_high")}
    assert set(result["generation"]) == scores and result["generation"]["bleu_n"] == 16
    assert 0 <= result["generation"]["bleu"] <= 100 and 0 <= result["generation"]["rougeL"] <= 1
    assert set(result["zero_shot"]["fr-de"]) == {"loss", "ppl"} | scores
    assert result["zero_shot"]["fr-de"]["rougeL_n"] == 16
    text = (tmp_path / "termination-log").read_text()
    assert len(text.encode()) < COMPACT_LIMIT
    assert message["zero_shot"] == result["zero_shot"]
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["learning_rate"] is not None  # the resolved config that ran is kept


def test_diverging_run_fails_with_non_finite_loss_and_exit_3(mini_world, tmp_path):
    config = base_config(mini_world, method="fmt", learning_rate=1e12, grad_clip=0.0, max_steps=12)
    done, result, message = run_trainer(tmp_path, config)
    assert done.returncode == 3, done.stderr[-2000:]
    assert message["outcome"] == "Failed" and message["reason"] == "NonFiniteLoss"
    assert "lower learning_rate" in message["message"]


def test_the_base_model_is_evaluated_first_and_kept_when_training_does_not_help(mini_world, tmp_path):
    # learning rate 1e-30: the weights do not move, so no later evaluation is better than the
    # one before the first step, and the run reports the base model (best_step 0).
    still = base_config(mini_world, method="fmt", learning_rate=1e-30, evals_per_epoch=2,
                        data_size=64, early_stopping_patience=0)
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    done, frozen, _ = run_trainer(tmp_path / "a", still)
    assert done.returncode == 0, done.stderr[-2000:]
    assert frozen["config"]["eval_interval"] == 4  # 64 examples / 2 per epoch / batch 8
    assert [step for step, _ in frozen["curves"]["dev"]] == [0, 4, 8, 12]
    assert frozen["best_step"] == 0
    # a run that learns starts from the same base: its step-0 dev loss is the same number
    done, moving, _ = run_trainer(tmp_path / "b", dict(still, learning_rate=3e-3))
    assert done.returncode == 0, done.stderr[-2000:]
    assert moving["curves"]["dev"][0] == frozen["curves"]["dev"][0]
    assert moving["best_step"] > 0 and moving["best_dev_loss"] < frozen["best_dev_loss"]


def test_early_stopping_ends_the_run_patience_evaluations_after_the_best(mini_world, tmp_path):
    # a rate high enough to overfit 16 examples fast: the dev loss turns up and the run stops
    config = base_config(mini_world, method="fmt", learning_rate=1e-2, data_size=16,
                         eval_interval=1, early_stopping_patience=2, max_steps=200)
    done, result, _ = run_trainer(tmp_path, config)
    assert done.returncode == 0, done.stderr[-2000:]
    dev_steps = [step for step, _ in result["curves"]["dev"]]
    assert result["steps"] < 200 and dev_steps[-1] == result["best_step"] + 2
    assert "early stop" in done.stderr
