"""The memory check under FSDP (ftscale.costplan): whether a run shards is the trainer's own rule
(ftscale_trainer.sharding), so a full-model study that only fits sharded is accepted with
`training.sharding` fsdp or auto and rejected, with the way out named, with none."""

from __future__ import annotations

import copy

import pytest

from ftscale import costplan
from ftscale.costplan import GIB
from ftscale.spec import load_study
from ftscale_trainer import sharding

B = 1_000_000_000

STUDY = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "big"},
    "spec": {
        "task": {"name": "mt", "data": {"train": "t.jsonl", "dev": "d.jsonl", "test": "e.jsonl"},
                 "maxSourceTokens": 256, "maxTargetTokens": 256},
        "models": [{"name": "l7b", "source": "meta/l7b", "parameters": 7 * B, "gpus": 8}],
        "methods": [{"name": "fmt", "training": {"batchSize": 128, "maxSteps": 1000}}],
        "dataSizes": [10000],
        "training": {"maxEpochs": 100, "evalInterval": 250, "precision": "bf16"},
        "evaluation": {"devExamples": 100, "testExamples": 200},
        "execution": {"gpu": {"type": "h100"}, "gpuMemoryGiB": 80},
    },
}


def study(sharding_setting: str | None, **model):
    doc = copy.deepcopy(STUDY)
    if sharding_setting is not None:
        doc["spec"]["training"]["sharding"] = sharding_setting
    doc["spec"]["models"][0].update(model)
    return load_study(doc)


def fmt_plan(st):
    (run,) = costplan.plan_study(st.spec, st.name).runs
    return run


def test_7b_fmt_on_8_gpus_of_80gb_is_rejected_unsharded():
    st = study("none")
    problems = costplan.check_fits(st.spec, st.name)
    assert len(problems) == 1, problems
    msg = problems[0]
    # 7e9 · (6 + 4 + 8) bytes on every GPU: no micro-batch or checkpointing makes that fit
    assert msg.startswith("model l7b, method fmt: needs ≈ ") and "8 GPUs of 80 GiB" in msg
    assert "training.sharding: auto or fsdp" in msg
    assert not fmt_plan(st).memory.sharded


@pytest.mark.parametrize("setting", ["fsdp", "auto", None])  # None: the default, auto
def test_7b_fmt_on_8_gpus_of_80gb_is_accepted_sharded(setting):
    st = study(setting)
    assert costplan.check_fits(st.spec, st.name) == []
    run = fmt_plan(st)
    assert run.memory.sharded and run.fits
    # weights, gradients and Adam divided by the 8 GPUs (fp32 master weights, 4 + 4 + 8 bytes)
    assert run.memory.gradients == 4 * 7 * B / 8 and run.memory.optimizer == 8 * 7 * B / 8
    assert run.memory.total < 80 * GIB


def test_auto_keeps_a_model_that_fits_one_gpu_data_parallel():
    # 1B: 18 bytes per parameter ≈ 17 GiB, far below 80 GiB — the trainer will not shard it
    st = study("auto", name="m1b", source="org/m1b", parameters=B)
    run = fmt_plan(st)
    assert not run.memory.sharded and run.fits


def test_a_multi_node_run_shards_across_all_its_gpus():
    st = study("auto", gpus=4, nodes=2)
    run = fmt_plan(st)
    assert run.priced_gpus == 8 and run.memory.sharded
    assert run.memory.optimizer == 8 * 7 * B / 8


def test_the_plan_asks_the_trainers_rule(monkeypatch):
    """The cost plan holds no sharding rule of its own: change the trainer's and the plan
    follows (here: a rule that never shards makes the fitting study fail the check)."""
    calls = []

    def never(setting, method, world_size, device_type, fits_one_device):
        calls.append((setting, method, world_size, device_type, fits_one_device))
        return "none", "never"

    monkeypatch.setattr(sharding, "choose_sharding", never)
    st = study("auto")
    assert costplan.check_fits(st.spec, st.name)  # rejected now
    # the trainer's inputs: its setting, 8 processes on GPUs, and its own estimate says the
    # unsharded model does not fit one 80 GiB GPU
    assert calls[0] == ("auto", "fmt", 8, "cuda", False)


def test_a_cpu_run_is_never_sharded():
    st = study("fsdp", gpus=0)
    run = fmt_plan(st)
    assert run.priced_gpus == 0 and not run.memory.sharded
