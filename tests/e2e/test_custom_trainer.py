"""A trainer of your own through the run contract (docs/run-contract.md).

The trainer is examples/custom-trainer/train_hf.py (the plain Hugging Face Trainer + peft, no
ftscale import). Fast tests: the doc lists every exit code and every config field, the example
uses the table's codes, a bad config exits 2 with a Failed result ftscale parses, and the run
Job of a study naming the script runs it with the contract's flags. Slow tests: a 3-run study
(fmt, LoRA, prompt tuning) through `ftscale run` on a tiny random Llama written by
`save_pretrained` (the hf_checkpoints fixture of tests/trainer, no download); SIGTERM: exit
143 with a checkpoint, then the same command resumes and succeeds; a diverging run exits 3;
and the same test loss as ftscale's own trainer for the same weights (the fitted quantity
means the same).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ftscale.api import outcomes, run_contract
from ftscale.controller import names
from ftscale.controller.desired import desired_runs
from ftscale.controller.settings import OperatorSettings
from ftscale.controller.templates import StudyRef, run_job
from ftscale.results import SCHEMA, parse_result
from ftscale.spec import load_study

from trainer.conftest import hf_checkpoints, mini_world  # noqa: F401 - fixtures, reused

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "custom-trainer"
SCRIPT = EXAMPLE / "train_hf.py"
DOC = ROOT / "docs" / "run-contract.md"
ENV = dict(os.environ, PYTHONPATH=f"{ROOT / 'operator'}:{ROOT / 'trainer_image'}",
           CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1")
ENV.pop("FTSCALE_TRAINER_CMD", None)


def _example_module():
    spec = importlib.util.spec_from_file_location("train_hf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # stdlib imports only: torch & co. load inside train()
    return module


def _doc_section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


# ---- the document and the example against the code ------------------------------------------
def test_the_doc_lists_every_exit_code_with_its_reason_and_retry():
    rows = re.findall(r"^\| (\d+) \| (\w+) \| (yes|no) \|", _doc_section("Exit codes"), re.M)
    listed = {(int(code), reason, retried == "yes") for code, reason, retried in rows}
    table = {(e.code, e.reason or outcomes.SUCCEEDED, e.retriable) for e in outcomes.EXIT_CODES}
    assert listed == table


def test_the_doc_lists_every_config_field():
    from ftscale_trainer.config import TrainConfig, ZeroShotSet

    section = _doc_section("The config file")
    missing = [f.name for f in dataclasses.fields(TrainConfig) if f"`{f.name}`" not in section]
    missing += [f"zero_shot.{f.name}" for f in dataclasses.fields(ZeroShotSet)
                if f"`{f.name}`" not in section]
    assert not missing, f"docs/run-contract.md does not describe {missing}"


def test_the_doc_lists_every_result_field():
    from ftscale.results import RunResult

    section = _doc_section("The result")
    missing = [f.name for f in dataclasses.fields(RunResult) if f"`{f.name}`" not in section]
    assert not missing, f"docs/run-contract.md does not describe {missing}"


def test_the_example_exits_with_the_contracts_codes():
    table = {e.reason: e.code for e in outcomes.EXIT_CODES}
    assert _example_module().EXIT_CODES == table


def test_a_bad_config_exits_2_with_a_failed_result_that_ftscale_parses(tmp_path):
    config = {"study": "s", "run_id": "r1", "model": "m", "method": "lora", "pet_size": 4,
              "data_size": 10, "seed": 0, "train_path": str(tmp_path / "missing.jsonl"),
              "dev_path": str(tmp_path / "missing.jsonl"), "test_path": str(tmp_path / "x")}
    (tmp_path / "run.json").write_text(json.dumps(config))
    term = tmp_path / "termination-log"
    done = subprocess.run([sys.executable, str(SCRIPT), "--config", str(tmp_path / "run.json"),
                           "--output", str(tmp_path / "out"), "--metrics-port", "9400"],
                          env=dict(ENV, TERMINATION_MESSAGE_PATH=str(term)),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == outcomes.EXIT_INVALID_CONFIG, done.stderr
    for text in (term.read_text(), (tmp_path / "out" / "result.json").read_text()):
        result = parse_result(text)
        assert (result.outcome, result.reason) == (outcomes.FAILED, outcomes.INVALID_CONFIG)
        assert (result.run_id, result.model, result.pet_size) == ("r1", "m", 4)
        assert "does not exist" in result.message
    assert len(term.read_bytes()) < outcomes.COMPACT_LIMIT


def test_the_run_job_of_a_study_with_its_own_trainer_has_its_command_and_the_contracts_flags():
    """What test_controller_templates does not check: the whole command line (with --output and
    --metrics-port), the env that names the run, and the config file a custom trainer reads."""
    study = load_study(EXAMPLE / "study.yaml")
    spec = dict(study.spec, execution=dict(study.spec["execution"], image="me/train-hf:1",
                                           volumes={"results": {"claimName": "results"}}))
    settings = OperatorSettings(trainer_image="", trainer_metrics_port=9400)
    run = desired_runs(study.name, spec)[0]
    job = run_job(StudyRef(study.name, "ns", "uid-1"), spec, run, settings)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_file = f"{names.CONFIG_DIR}/{names.RUN_CONFIG_FILE}"
    output = f"{names.RESULTS_DIR}/{study.name}/{run.run_id}"
    assert container["command"] == ["python", "examples/custom-trainer/train_hf.py",
                                    "--config", config_file, "--output", output,
                                    "--metrics-port", "9400"]
    assert container["command"] == run_contract.trainer_argv(
        spec["execution"]["command"], config_file, output, 9400)
    assert container["image"] == "me/train-hf:1"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["FTSCALE_STUDY"] == study.name and env["FTSCALE_RUN_ID"] == run.run_id
    assert env["HF_HUB_OFFLINE"] == "1" and env["HOME"] == names.TMP_DIR
    assert container["terminationMessagePath"] == outcomes.TERMINATION_MESSAGE_PATH
    # the file at --config: the pod annotation, through a downward-API volume
    config = json.loads(job["spec"]["template"]["metadata"]["annotations"][
        names.ANNOTATION_RUN_CONFIG])
    key = run.key
    assert {k: config[k] for k in ("study", "run_id", "model", "method", "pet_size",
                                   "data_size", "seed")} == {
        "study": study.name, "run_id": run.run_id, "model": key.model, "method": key.method,
        "pet_size": key.pet_size, "data_size": key.data_size, "seed": key.seed}
    assert config["task"] == "toy-en-de" and config["learning_rate"] == 0.003
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[names.CONFIG_DIR]["readOnly"] is True and names.RESULTS_DIR in mounts


# ---- the example, trained ---------------------------------------------------------------------
def _study(methods: list[dict]) -> dict:
    """Data and model paths are relative: `ftscale run --data-root/--models-root` resolve them,
    as the data and models volumes do on a cluster."""
    return {
        "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy",
        "metadata": {"name": "custom-e2e"},
        "spec": {
            "task": {"name": "mini-en-de",
                     "data": {"train": "train.jsonl", "dev": "dev.jsonl", "test": "test.jsonl"},
                     "sourceLanguage": "English", "targetLanguage": "German",
                     "maxSourceTokens": 32, "maxTargetTokens": 32},
            "models": [{"name": "llama", "source": "llama"}],
            "methods": methods,
            "dataSizes": [48],
            "training": {"maxSteps": 4, "batchSize": 8, "evalInterval": 2, "warmupSteps": 0},
            "evaluation": {"devExamples": 16, "testExamples": 24},
            "law": {"bootstrap": 0, "heldOut": {"x": "none", "d": "none"}},
            "execution": {"command": ["python", "examples/custom-trainer/train_hf.py"],
                          "maxParallelRuns": 1},
        },
    }


@pytest.mark.slow
def test_a_study_runs_through_ftscale_run_with_the_custom_trainer(mini_world, hf_checkpoints,
                                                                  tmp_path):
    from transformers import AutoModelForCausalLM

    checkpoint = hf_checkpoints["llama"]
    methods = [{"name": "fmt", "training": {"learningRate": 3e-3}},
               {"name": "lora", "sizes": [2], "training": {"learningRate": 1e-2}},
               {"name": "prompt", "sizes": [4], "training": {"learningRate": 1e-1}}]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(_study(methods)))
    workdir = tmp_path / "work"
    done = subprocess.run([sys.executable, "-m", "ftscale", "run", str(tmp_path / "study.yaml"),
                           "--workdir", str(workdir), "--parallel", "1",
                           "--data-root", str(mini_world), "--models-root", str(checkpoint.parent)],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    assert "3 succeeded, 0 failed" in text and (workdir / "report.md").is_file()

    base = AutoModelForCausalLM.from_pretrained(str(checkpoint))
    embeddings = {id(p) for p in base.get_input_embeddings().parameters()}
    non_embedding = sum(p.numel() for p in base.parameters() if id(p) not in embeddings)
    lines = (workdir / "results.jsonl").read_text().splitlines()
    results = {r.method: r for r in map(parse_result, lines)}
    assert sorted(results) == ["fmt", "lora", "prompt"]
    for method, r in results.items():
        assert r.ok and r.study == "custom-e2e" and r.schema == SCHEMA
        assert (r.data_size, r.seed, r.steps) == (48, 0, 4) and r.best_step in (2, 4)
        assert math.isfinite(r.test_loss) and r.test_loss > 0 and r.test_ppl > 1
        assert r.model_params == non_embedding  # X_m counted by the trainer (the spec has none)
        full = parse_result((workdir / "runs" / r.run_id / "result.json").read_text())
        assert [step for step, _ in full.curves["dev"]] == [2, 4]
        assert full.best_dev_loss == min(loss for _, loss in full.curves["dev"])
        assert full.config["run_id"] == r.run_id  # the config that ran, in the full form
    assert results["fmt"].trainable_params == results["fmt"].total_params
    assert results["lora"].pet_size == 2 and results["prompt"].pet_size == 4
    # a rank-2 adapter and a 4-vector prompt train far fewer weights than the model has
    assert results["prompt"].trainable_params == 4 * 32
    assert 0 < results["lora"].trainable_params < results["fmt"].trainable_params / 4
    report = (workdir / "report.md").read_text()
    assert "3 in the grid, 3 succeeded, 0 failed" in report


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_143_and_the_same_command_resumes(mini_world,
                                                                           hf_checkpoints,
                                                                           tmp_path):
    config = {"study": "s", "run_id": "r1", "model": "llama", "method": "lora", "pet_size": 2,
              "data_size": 48, "seed": 0, "model_source": str(hf_checkpoints["llama"]),
              "train_path": str(mini_world / "train.jsonl"),
              "dev_path": str(mini_world / "dev.jsonl"), "test_path": str(mini_world / "test.jsonl"),
              "max_steps": 400, "batch_size": 4, "eval_interval": 2, "learning_rate": 1e-2,
              "dev_examples": 8, "test_examples": 8, "threads": 1}
    (tmp_path / "run.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    argv = run_contract.trainer_argv([sys.executable, str(SCRIPT)], str(tmp_path / "run.json"),
                                     str(out))
    env = dict(ENV, TERMINATION_MESSAGE_PATH=str(tmp_path / "termination-log"))
    with open(tmp_path / "log", "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        # wait for training to be under way (its first checkpoint), not for a fixed time
        deadline = time.monotonic() + 300
        while not list(out.glob("checkpoint/checkpoint-*")) and proc.poll() is None:
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == outcomes.EXIT_INTERRUPTED, (tmp_path / "log").read_text()[-2000:]
    stopped = parse_result((out / "result.json").read_text())
    assert (stopped.outcome, stopped.reason) == (outcomes.FAILED, outcomes.INTERRUPTED)
    step = int(re.search(r"at step (\d+)", stopped.message).group(1))
    assert (out / "checkpoint" / f"checkpoint-{step}").is_dir()

    # the same command resumes from that step (asked for 2 more steps, to keep the test short)
    config["max_steps"] = step + 2
    (tmp_path / "run.json").write_text(json.dumps(config))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"resuming from {out / 'checkpoint' / f'checkpoint-{step}'}" in done.stderr
    result = parse_result((out / "result.json").read_text())
    assert result.ok and result.steps == step + 2


@pytest.mark.slow
def test_the_example_reports_the_same_test_loss_as_ftscales_trainer_for_the_same_weights(
        mini_world, hf_checkpoints, tmp_path):
    """The fitted quantity means the same whoever trains: at a learning rate of 1e-9 both
    trainers end on the base model's weights (LoRA starts as the identity), so both must report
    its per-token target NLL on the same test examples under the same template."""
    from trainer.conftest import run_trainer

    config = {"study": "s", "run_id": "r1", "model": "llama", "method": "lora", "pet_size": 2,
              "data_size": 16, "seed": 0, "model_source": str(hf_checkpoints["llama"]),
              "train_path": str(mini_world / "train.jsonl"),
              "dev_path": str(mini_world / "dev.jsonl"), "test_path": str(mini_world / "test.jsonl"),
              "source_lang": "English", "target_lang": "German", "backend": "hf",
              "max_steps": 2, "batch_size": 4, "eval_interval": 1, "learning_rate": 1e-9,
              "warmup_steps": 0, "dev_examples": 8, "test_examples": 40, "threads": 1}
    (tmp_path / "ours").mkdir()
    done, ours, _ = run_trainer(tmp_path / "ours", config)
    assert done.returncode == 0, done.stderr[-2000:]
    (tmp_path / "run.json").write_text(json.dumps(config))
    mine = subprocess.run(run_contract.trainer_argv([sys.executable, str(SCRIPT)],
                                                    str(tmp_path / "run.json"), str(tmp_path / "out")),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert mine.returncode == 0, mine.stderr[-2000:]
    theirs = parse_result((tmp_path / "out" / "result.json").read_text())
    assert ours["test_loss"] > 1.0
    assert theirs.test_loss == pytest.approx(ours["test_loss"], rel=1e-6)  # measured: 2e-8
    assert theirs.model_params == ours["model_params"]


@pytest.mark.slow
def test_a_diverging_run_exits_3_with_a_non_finite_loss_result(mini_world, hf_checkpoints,
                                                               tmp_path):
    config = {"study": "s", "run_id": "r1", "model": "llama", "method": "fmt",
              "data_size": 16, "seed": 0, "model_source": str(hf_checkpoints["llama"]),
              "train_path": str(mini_world / "train.jsonl"),
              "dev_path": str(mini_world / "dev.jsonl"), "test_path": str(mini_world / "test.jsonl"),
              "max_steps": 8, "batch_size": 4, "eval_interval": 8, "log_interval": 1,
              "learning_rate": 1e12, "grad_clip": 0, "warmup_steps": 0,
              "dev_examples": 4, "test_examples": 4, "threads": 1}
    (tmp_path / "run.json").write_text(json.dumps(config))
    done = subprocess.run(run_contract.trainer_argv([sys.executable, str(SCRIPT)],
                                                    str(tmp_path / "run.json"), str(tmp_path / "out")),
                          env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == outcomes.EXIT_NON_FINITE_LOSS, done.stderr[-2000:]
    result = parse_result((tmp_path / "out" / "result.json").read_text())
    assert (result.outcome, result.reason) == (outcomes.FAILED, outcomes.NON_FINITE_LOSS)
    assert "train loss" in result.message  # caught while training, not only at the test loss
