"""The cost plan (ftscale.costplan) and `ftscale plan`: numbers against hand computations
written out below, the memory check, and the command's table and JSON on the examples."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import yaml

from ftscale import cli, costplan, grid
from ftscale.costplan import GIB
from ftscale.spec import load_study, spec_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
B = 1_000_000_000

# A 1B model (non-embedding), 512 tokens per example, H100 at MFU 0.5 for round numbers.
BASE = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "cost"},
    "spec": {
        "task": {"name": "mt", "data": {"train": "t.jsonl", "dev": "d.jsonl", "test": "e.jsonl"},
                 "maxSourceTokens": 256, "maxTargetTokens": 256},
        "models": [{"name": "m1b", "source": "org/m1b", "parameters": B, "gpus": 1}],
        "methods": [
            {"name": "fmt", "training": {"batchSize": 128, "maxSteps": 1000}},
            {"name": "lora", "sizes": [8], "training": {"batchSize": 16, "maxSteps": 2000}},
            {"name": "prompt", "sizes": [100], "training": {"batchSize": 16, "maxSteps": 2000}},
        ],
        "dataSizes": [10000],
        "training": {"maxEpochs": 100, "evalInterval": 250, "precision": "bf16"},
        "evaluation": {"devExamples": 100, "testExamples": 200},
        "execution": {"gpu": {"type": "h100", "mfu": 0.5}},
    },
}


def study(**edits):
    doc = copy.deepcopy(BASE)
    for path, value in edits.items():
        node = doc["spec"]
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p] if not p.isdigit() else node[int(p)]
        node[leaf] = value
    return load_study(doc)


def plans(st, **kwargs):
    return {r.method: r for r in costplan.plan_study(st.spec, st.name, **kwargs).runs}


# ---- the shape a bare parameter count implies ----------------------------------------------
def test_shape_from_parameters_by_hand():
    # h = (128 · 1e9 / 12)^(1/3) = 2201.1 → nearest multiple of 64: 2176;
    # L = 1e9 / (12 · 2176²) = 17.6 → 18; SwiGLU width (2176·8//3 + 7)//8·8 = 5808.
    shape = costplan.shape_from_parameters(B)
    assert (shape.hidden_size, shape.layers, shape.intermediate_size) == (2176, 18, 5808)
    assert shape.vocab_size is None and shape.embedding_params == 0 and not shape.exact
    # Pythia-1B's real shape (h 2048, 16 layers) comes back from its parameter count
    pythia = costplan.shape_from_parameters(805_736_448)
    assert (pythia.hidden_size, pythia.layers) == (2048, 16)
    with pytest.raises(costplan.CostPlanError):
        costplan.shape_from_parameters(0)


# ---- FLOPs, GPU-hours and memory by hand --------------------------------------------------
def test_fmt_1b_by_hand():
    r = plans(study())["fmt"]
    # steps = min(maxSteps 1000, ceil(100 epochs · 10000 / 128) = 7813) = 1000
    # tokens = 1000 steps · 128 examples · (256 + 256) tokens = 65,536,000
    assert r.workload.steps == 1000 and r.workload.seq_len == 512
    assert r.workload.train_tokens == 65_536_000
    assert r.train_flops == pytest.approx(6 * B * 65_536_000)  # 3.932e17
    # dev loss at steps 250, 500, 750, 1000 (4 × 100 examples) + test (200), 512 tokens each
    assert r.workload.dev_evaluations == 4
    assert r.eval_flops == pytest.approx(2 * B * 512 * (4 * 100 + 200))  # 6.144e14
    # memory on an H100 (79.6 GiB): fp32 master 4 + bf16 copy 2 + grads 4 + Adam 8 bytes/param
    # = 18e9 B; activations 34 · s · b · h · L = 34·512·128·2176·18 = 87.3e9 B at the whole batch:
    # too much, so the micro-batch halves to 64 (43.6e9 B) and fits without checkpointing.
    m = r.memory
    assert (m.micro_batch_size, m.gradient_checkpointing, m.sharded) == (64, False, False)
    assert m.weights == 6 * B and m.gradients == 4 * B and m.optimizer == 8 * B
    assert m.activations == 34 * 512 * 64 * 2176 * 18 == 43_637_538_816
    assert m.total == 18 * B + 43_637_538_816 + GIB and r.fits
    assert r.recompute_flops == 0
    # GPU-hours = FLOPs / (989e12 · 0.5) / 3600 = (3.93216e17 + 6.144e14) / 4.945e14 / 3600
    assert r.gpu_hours == pytest.approx((3.93216e17 + 6.144e14) / 4.945e14 / 3600)
    assert r.gpu_hours == pytest.approx(0.22123, abs=1e-5)
    assert r.wall_hours == pytest.approx(r.gpu_hours)  # one GPU


def test_lora_by_hand():
    r = plans(study())["lora"]
    # steps = min(2000, ceil(100 · 10000 / 16)) = 2000; tokens = 2000 · 16 · 512 = 16,384,000
    tokens = 16_384_000
    assert r.workload.train_tokens == tokens
    # all-linear on a Llama-shaped layer: q,k,v,o 4·(h+h) + gate,up,down 3·(h+f)
    # = 8·2176 + 3·(2176+5808) = 41,360 per rank and layer → 8 · 18 · 41,360 = 5,955,840
    assert r.adapter_params == 5_955_840
    # frozen base: forward + backward through activations 4·N; the adapter 6·N_lora
    assert r.train_flops == pytest.approx(4 * B * tokens + 6 * 5_955_840 * tokens)
    assert r.workload.dev_evaluations == 8
    assert r.eval_flops == pytest.approx(2 * (B + 5_955_840) * 512 * (8 * 100 + 200))
    m = r.memory
    # bf16 frozen base 2 bytes/param + fp32 adapter (4) with grads (4) and Adam (8)
    assert m.weights == 2 * B + 4 * 5_955_840
    assert (m.gradients, m.optimizer) == (4 * 5_955_840, 8 * 5_955_840)
    assert m.micro_batch_size == 16 and not m.gradient_checkpointing
    assert m.activations == 34 * 512 * 16 * 2176 * 18
    assert r.gpu_hours == pytest.approx((r.train_flops + r.eval_flops) / 4.945e14 / 3600)
    # a LoRA run costs about 4/6 of an FMT run per token
    fmt = plans(study())["fmt"]
    assert r.train_flops / tokens / (fmt.train_flops / fmt.workload.train_tokens) == \
        pytest.approx(4 / 6, rel=0.01)


def test_prompt_pays_for_its_prompt_tokens():
    r = plans(study())["prompt"]
    # every sequence is 100 prompt positions longer: 2000 · 16 · (100 + 512) tokens
    assert r.workload.seq_len == 612 and r.workload.train_tokens == 2000 * 16 * 612
    assert r.adapter_params == 100 * 2176
    assert r.train_flops == pytest.approx(4 * B * 2000 * 16 * 612)  # no adapter GEMMs


def test_generation_and_zero_shot_are_counted():
    st = study(evaluation={"devExamples": 100, "testExamples": 200,
                           "generation": {"metrics": ["bleu"], "maxExamples": 100,
                                          "maxNewTokens": 32}})
    r = plans(st)["fmt"]
    # 100 test examples decoded: ceil(100/64) = 2 batches · 32 steps; with a KV cache each
    # example costs 2·N·(256 prompt + 32 new tokens)
    assert r.workload.generated_examples == 100 and r.workload.decode_steps == 64
    assert r.workload.decode_tokens == 100 * (256 + 32)
    assert r.eval_flops == pytest.approx(2 * B * (512 * 600 + 100 * 288))


def test_gradient_checkpointing_costs_a_forward_pass():
    st = study(training={"maxEpochs": 100, "evalInterval": 250, "precision": "bf16"},
               models=[{"name": "m1b", "source": "org/m1b", "parameters": B, "gpus": 1}],
               execution={"gpu": {"type": "h100", "mfu": 0.5}, "gpuMemoryGiB": 18.3})
    r = plans(st)["fmt"]
    # 18e9 B of states + 1 GiB runtime leave 575.8e6 B of 18.3 GiB. One example's full
    # activations take 34·512·2176·18 = 681.8e6 B: too much. Checkpointed, an example takes
    # 512·2176·(2·18 + 34) = 78.0e6 B, so 7 would fit; the largest divisor of 128 below is 4.
    assert r.memory.gradient_checkpointing and r.fits and r.memory.micro_batch_size == 4
    assert r.memory.activations == 512 * 4 * 2176 * (2 * 18 + 34)
    assert r.recompute_flops == pytest.approx(2 * B * r.workload.train_tokens)
    assert r.train_flops == pytest.approx(6 * B * r.workload.train_tokens)  # model FLOPs unchanged
    assert r.gpu_hours == pytest.approx(
        (r.train_flops + r.recompute_flops + r.eval_flops) / 4.945e14 / 3600)


def test_fsdp_divides_the_states():
    st = study(models=[{"name": "m7b", "source": "org/m7b", "parameters": 7 * B, "gpus": 4}])
    r = plans(st)["fmt"]
    shape = costplan.shape_from_parameters(7 * B)
    assert r.memory.sharded
    # 16 bytes/param over 4 GPUs + two layers' bf16 parameters gathered at a time
    assert r.memory.weights == pytest.approx(4 * 7 * B / 4 + 2 * 2 * 7 * B / shape.layers)
    assert r.memory.optimizer == 8 * 7 * B / 4 and r.memory.gradients == 4 * 7 * B / 4
    assert r.fits
    # four GPUs: GPU-hours as for one, wall time a quarter
    assert r.wall_hours == pytest.approx(r.gpu_hours / 4)


# ---- GPU settings -------------------------------------------------------------------------
def test_gpu_defaults_and_overrides():
    assert costplan.GPU_TYPES["a100"].peak_tflops == 312
    assert costplan.GPU_TYPES["h100"].peak_tflops == costplan.GPU_TYPES["h200"].peak_tflops == 989
    assert costplan.GPU_TYPES["l4"].peak_tflops == 121
    bare = costplan.gpu_settings({})
    assert (bare.type, bare.mfu, bare.source) == ("h100", costplan.DEFAULT_MFU, "default")
    st = study()
    assert costplan.gpu_settings(st.spec).mfu == 0.5
    cmd = costplan.gpu_settings(st.spec, "a100", 0.4)
    assert (cmd.type, cmd.peak_tflops, cmd.mfu, cmd.memory_gib) == ("a100", 312, 0.4, 80)
    custom = study(execution={"gpu": {"type": "other", "peakTFLOPs": 200, "mfu": 0.3},
                              "gpuMemoryGiB": 48})
    got = costplan.gpu_settings(custom.spec)
    assert (got.peak_tflops, got.memory_gib, got.bandwidth_tbs) == (200, 48, None)
    with pytest.raises(costplan.CostPlanError, match="peakTFLOPs"):
        costplan.gpu_settings(study(execution={"gpu": {"type": "other"}}).spec)
    with pytest.raises(costplan.CostPlanError, match="MFU"):
        costplan.gpu_settings(st.spec, mfu=1.5)
    # the same run on an A100 at MFU 0.4 takes 989·0.5 / (312·0.4) times as long
    h100 = plans(st)["fmt"].gpu_hours
    a100 = plans(st, gpu_type="a100", mfu=0.4)["fmt"].gpu_hours
    assert a100 / h100 == pytest.approx(989 * 0.5 / (312 * 0.4), rel=1e-3)


def test_crd_gpu_types_are_the_plans():
    gpu = spec_schema()["properties"]["execution"]["properties"]["gpu"]
    assert set(gpu["properties"]["type"]["enum"]) == set(costplan.GPU_TYPES) | {"other"}


def test_cpu_runs_are_not_priced_unless_a_gpu_is_named():
    st = study(models=[{"name": "m1b", "source": "org/m1b", "parameters": B}],
               training={"maxEpochs": 100, "evalInterval": 250})  # precision: auto
    r = plans(st)["fmt"]
    assert r.gpus == 0 and r.gpu_hours is None and r.fits is None
    assert r.precision == "fp32" and r.memory.overhead == 0
    assert any("no GPU" in n for n in r.notes)
    priced = plans(st, gpu_type="h100")["fmt"]
    assert priced.priced_gpus == 1 and priced.gpu_hours > 0 and priced.precision == "bf16"


def test_toy_shapes_match_the_trainer():
    torch = pytest.importorskip("torch")  # noqa: F841 - tiny_llama and train import it
    from ftscale_trainer import toy
    from ftscale_trainer.config import TrainConfig
    from ftscale_trainer.train import total_steps

    for plan in toy.family_plans():
        shape = costplan.toy_shape(f"toy:{plan.name}@123")
        assert shape.non_embedding_params == plan.shape.non_embedding_params()
        assert (shape.hidden_size, shape.layers) == (plan.shape.hidden_size,
                                                     plan.shape.num_hidden_layers)
        assert shape.vocab_size == plan.shape.vocab_size
    for d, steps, epochs, batch in [(50, 120, 8.0, 16), (10000, 1000, 100.0, 128), (3, 9, 0.5, 4)]:
        cfg = TrainConfig(model="x", method="fmt", data_size=d, task="toy-en-de",
                          max_steps=steps, max_epochs=epochs, batch_size=batch)
        assert costplan.total_steps(steps, epochs, d, batch) == total_steps(cfg)


def test_a_model_of_unknown_size_is_said_not_guessed():
    st = study(models=[{"name": "mystery", "source": "org/mystery", "gpus": 1}])
    r = plans(st)["fmt"]
    assert r.train_flops is None and r.gpu_hours is None and r.memory is None
    assert "set models[].parameters" in r.notes[0]


# ---- the memory check ---------------------------------------------------------------------
def impossible():
    """FMT of a 7B model on one 80 GB GPU: 7e9 · 16 bytes of weights, grads and Adam alone."""
    return study(models=[{"name": "l7b", "source": "meta/l7b", "parameters": 7 * B, "gpus": 1}],
                 execution={"gpu": {"type": "h100"}, "gpuMemoryGiB": 80})


def test_check_fits_rejects_fmt_7b_on_one_80gb_gpu():
    problems = costplan.check_fits(impossible().spec)
    assert len(problems) == 1, problems  # lora and prompt fit
    msg = problems[0]
    assert msg.startswith("model l7b, method fmt: needs ≈ ")
    gib = float(msg.split("≈ ")[1].split(" GiB")[0])
    # 7e9 · (6 + 4 + 8) bytes = 126e9 B = 117.3 GiB before activations and runtime
    assert gib > 7 * B * 18 / GIB > 80
    assert "1 GPU of 80 GiB" in msg
    assert "models[].gpus: 2" in msg and "FSDP" in msg and "h200" in msg
    assert "at micro-batch 1 with gradient checkpointing" in msg  # what was already tried


def test_check_fits_accepts_after_the_suggested_change():
    st = impossible()
    manifest = copy.deepcopy(st.manifest)
    manifest["spec"]["models"][0]["gpus"] = 2
    assert costplan.check_fits(load_study(manifest).spec) == []


def test_check_fits_names_the_pet_remedies():
    # a 70B base in fp32 cannot fit one 80 GB GPU for lora; bf16 halves it but is still too big
    st = study(models=[{"name": "l70b", "source": "meta/l70b", "parameters": 70 * B, "gpus": 2}],
               methods=[{"name": "lora", "sizes": [8]}],
               training={"maxEpochs": 1, "precision": "fp32"},
               execution={"gpu": {"type": "a100"}})
    (msg,) = costplan.check_fits(st.spec)
    assert "method lora (size 8)" in msg and "2 GPUs of 80 GiB" in msg
    assert "More GPUs do not help" in msg
    assert "bf16" not in msg  # 140e9 B does not fit 80 GiB either
    assert "choose a smaller model" in msg


def test_check_fits_is_silent_without_gpu_facts():
    st = study(models=[{"name": "l7b", "source": "meta/l7b", "parameters": 7 * B, "gpus": 1}],
               execution={})
    assert costplan.check_fits(st.spec) == []
    # CPU-only studies have nothing to check
    for example in ("demo-study.yaml", "pet-size-study.yaml"):
        assert costplan.check_fits(load_study(EXAMPLES / example).spec) == []


# ---- the command --------------------------------------------------------------------------
def run_cli(capsys, *argv):
    code = cli.main(["plan", *map(str, argv)])
    out = capsys.readouterr()
    return code, out.out, out.err


def _table_rows(text):
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model "))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_plan_table_and_json_on_the_examples(capsys, example):
    path = EXAMPLES / example
    st = load_study(path)
    runs = grid.expand(st.spec)
    code, out, _ = run_cli(capsys, path)
    assert code == 0
    assert f"Cost plan of study {st.name}: {len(runs)} runs" in out
    rows = _table_rows(out)
    pairs = {(r.key.model, r.key.method) for r in runs}
    assert {(row[0], row[1]) for row in rows[:-1]} == pairs
    assert rows[-1][0] == "total" and int(rows[-1][1]) == len(runs)

    code, out, _ = run_cli(capsys, path, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["problems"] == []
    assert [r["run_id"] for r in doc["runs"]] == [r.run_id for r in runs]
    assert doc["total_flops"] == pytest.approx(sum(r["total_flops"] for r in doc["runs"]))
    assert all(r["train_flops"] > 0 and r["memory_gib"] > 0 for r in doc["runs"])
    assert sum(g["runs"] for g in doc["groups"]) == len(runs)


def test_plan_gpu_cluster_example_numbers(capsys):
    code, out, _ = run_cli(capsys, EXAMPLES / "gpu-cluster-study.yaml", "--json")
    doc = json.loads(out)
    assert doc["gpu"]["type"] == "h100" and doc["gpu"]["source"] == "default"
    assert doc["total_gpu_hours"] == pytest.approx(sum(r["gpu_hours"] for r in doc["runs"]))
    first = doc["runs"][0]  # p70m fmt, D_f 10,000: 7813 steps · 128 · 512 tokens
    assert (first["model"], first["method"], first["data_size"]) == ("p70m", "fmt", 10000)
    tokens = math.ceil(100 * 10000 / 128) * 128 * 512
    assert first["workload"]["train_tokens"] == tokens
    assert first["train_flops"] == pytest.approx(6 * 18915328 * tokens)
    # table: the total GPU-hours line and the default-GPU note
    code, out, _ = run_cli(capsys, EXAMPLES / "gpu-cluster-study.yaml")
    total = _table_rows(out)[-1]
    assert float(total[-1].replace(",", "")) == pytest.approx(doc["total_gpu_hours"], rel=1e-3)
    assert "priced on h100" in out


def test_plan_demo_is_cpu_only_unless_a_gpu_is_named(capsys):
    code, out, _ = run_cli(capsys, EXAMPLES / "demo-study.yaml")
    assert code == 0 and "GPU: none" in out
    assert all(row[5] == "no" for row in _table_rows(out)[:-1])  # "no GPU"
    code, out, _ = run_cli(capsys, EXAMPLES / "demo-study.yaml", "--gpu", "L4", "--mfu", "0.2",
                           "--runs")
    assert code == 0 and "GPU: l4 (121 TFLOP/s bf16 peak, MFU 0.2" in out
    assert "o5ozmooqkz" in out  # --runs lists every run (tiny-1 fmt D_f 20)


def test_plan_reports_what_does_not_fit(capsys, tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(impossible().manifest))
    code, out, _ = run_cli(capsys, path)
    assert code == 1
    assert "does not fit: model l7b, method fmt" in out
    fmt_row = next(r for r in _table_rows(out) if r[:2] == ["l7b", "fmt"])
    assert fmt_row[-1] == "NO"
    code, out, _ = run_cli(capsys, path, "--json")
    assert code == 1 and json.loads(out)["problems"][0].startswith("model l7b, method fmt")


def test_plan_rejects_bad_input(capsys, tmp_path):
    code, _, err = run_cli(capsys, tmp_path / "missing.yaml")
    assert code == 2 and "ftscale plan:" in err
    code, _, err = run_cli(capsys, EXAMPLES / "demo-study.yaml", "--mfu", "0")
    assert code == 2 and "MFU" in err


def test_fixed_memory_settings_are_kept_and_named_in_the_remedy(monkeypatch):
    shape = costplan.shape_from_parameters(B)
    fixed = costplan.choose_memory("fmt", shape, 0, precision="bf16", gpus=1, local_batch=128,
                                   seq_len=512, micro_batch=128, checkpointing=False,
                                   sharded=False, capacity_bytes=40 * GIB)
    assert (fixed.micro_batch_size, fixed.gradient_checkpointing) == (128, False)
    assert fixed.total > 40 * GIB  # kept although it does not fit
    auto = costplan.choose_memory("fmt", shape, 0, precision="bf16", gpus=1, local_batch=128,
                                  seq_len=512, micro_batch=None, checkpointing=None,
                                  sharded=False, capacity_bytes=40 * GIB)
    assert auto.total <= 40 * GIB and auto.micro_batch_size < 128

    # training.microBatchSize / gradientCheckpointing as the trainer config will carry them
    # (issue 13): a fixed micro-batch of 128 without checkpointing on one 80 GB GPU
    resolved = costplan._resolved_config

    def with_fixed_settings(*args):
        cfg = resolved(*args)
        return dataclasses.replace(cfg, micro_batch_size=128, gradient_checkpointing="false")
    monkeypatch.setattr(costplan, "_resolved_config", with_fixed_settings)
    st = study(methods=[BASE["spec"]["methods"][0]], execution={"gpu": {"type": "h100"}})
    (msg,) = costplan.check_fits(st.spec)
    assert "at micro-batch 128 without gradient checkpointing" in msg
    assert "allow gradient checkpointing" in msg and "lower training.microBatchSize" in msg


def test_plan_needs_no_torch():
    """The operator image has no torch: planning must not import it (nor transformers/peft)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'transformers', 'peft'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "from ftscale import cli\n"
            f"sys.exit(cli.main(['plan', {str(EXAMPLES / 'demo-study.yaml')!r}, '--json']))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"][0]["memory"]["logits"] > 0  # toy vocabulary known


def test_a_multi_node_run_is_priced_on_the_gpus_of_all_its_nodes():
    from ftscale import costplan, grid
    from ftscale.spec import with_defaults

    spec = with_defaults({
        "task": {"name": "toy-en-de"},
        "models": [{"name": "big", "source": "org/big", "parameters": 1_000_000_000, "gpus": 8}],
        "methods": [{"name": "fmt"}], "dataSizes": [1000]})
    one = costplan.plan_study(spec, "s").runs[0]
    spec["models"][0]["nodes"] = 2
    two = costplan.plan_study(spec, "s").runs[0]
    assert two.priced_gpus == 16 and one.priced_gpus == 8
    assert two.gpu_hours == pytest.approx(one.gpu_hours, rel=0.2)  # same work, 16 GPUs held
    assert len(grid.expand(spec)) == 1
