"""Resumable checkpoints (ftscale_trainer.checkpoint): safetensors + JSON, committed atomically,
nothing unpickled. A round trip restores the optimizer exactly; a resumed run continues
bit-for-bit where the uninterrupted one went; a truncated tensor file, a garbage state.json or
tensors of another model are reported and the run restarts from step 0 and completes; an empty
dev or test split is an InvalidConfig (exit 2) through the trainer's entry point."""

import json
import os

import pytest
import torch
from conftest import base_config, run_in_process

from ftscale.api import outcomes
from ftscale_trainer import checkpoint


# ---- the format, on a toy module ----------------------------------------------------------------
def _trained(seed: int = 0, steps: int = 3):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99))
    for _ in range(steps):
        _step(model, opt)
    return model, opt


def _step(model, opt) -> float:
    loss = model(torch.ones(5, 4)).pow(2).sum()
    loss.backward()
    opt.step()
    opt.zero_grad()
    return float(loss.detach())


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def _save(folder, model, opt, best=None, progress=None):
    return checkpoint.save(str(folder), "digest", progress or {"step": 3}, _params(model),
                           opt.state_dict(), best, checkpoint.rng_state())


def test_round_trip_restores_weights_optimizer_and_rng_exactly(tmp_path):
    model, opt = _trained()
    _save(tmp_path, model, opt, best=_params(model), progress={"step": 3, "curves": {"dev": [[0, 1.5]]}})
    expected_draw = torch.rand(3)  # what the RNG gives next, after the save

    fresh, fresh_opt = _trained(seed=1, steps=1)  # other weights, other moments
    ckpt = checkpoint.read(str(tmp_path), _params(fresh))
    assert ckpt.digest == "digest" and ckpt.progress == {"step": 3, "curves": {"dev": [[0, 1.5]]}}
    assert ckpt.best is not None and set(ckpt.best) == set(ckpt.model)
    with torch.no_grad():
        for name, p in fresh.named_parameters():
            p.copy_(ckpt.model[name])
    fresh_opt.load_state_dict(ckpt.optimizer)
    assert fresh_opt.param_groups[0]["betas"] == (0.9, 0.99)  # a tuple again, as torch keeps it
    checkpoint.set_rng_state(ckpt.rng)
    assert torch.equal(torch.rand(3), expected_draw)
    # The next steps are the original's, bit for bit.
    for _ in range(3):
        assert _step(fresh, fresh_opt) == _step(model, opt)
    for (_, a), (_, b) in zip(fresh.named_parameters(), model.named_parameters()):
        assert torch.equal(a, b)


def test_a_new_commit_replaces_the_old_and_an_unfinished_write_leaves_it_whole(tmp_path):
    model, opt = _trained()
    first = _save(tmp_path, model, opt)
    _step(model, opt)
    second = _save(tmp_path, model, opt, progress={"step": 4})
    assert not os.path.exists(first) and os.path.exists(second)
    assert checkpoint.read(str(tmp_path)).progress["step"] == 4
    # A crash after the next tensor file was written but before state.json was replaced: the
    # commit on disk still names the previous file, which is whole.
    (tmp_path / "tensors-000003.safetensors").write_bytes(b"half a file")
    (tmp_path / "state.json.tmp").write_text('{"half": ')
    assert checkpoint.read(str(tmp_path)).progress["step"] == 4
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["state.json", "state.json.tmp", os.path.basename(second), "tensors-000003.safetensors"])
    _save(tmp_path, model, opt, progress={"step": 5})  # the next commit sweeps the strays
    assert sorted(os.listdir(tmp_path)) == ["state.json", "tensors-000003.safetensors"]


def test_nothing_in_a_checkpoint_is_unpickled(tmp_path):
    model, opt = _trained()
    _save(tmp_path, model, opt)
    doc = json.loads((tmp_path / "state.json").read_text())
    assert doc["format"] == checkpoint.FORMAT and doc["tensors"].endswith(".safetensors")
    assert isinstance(doc["rng"]["torch"], list)
    with open(tmp_path / doc["tensors"], "rb") as handle:
        header_len = int.from_bytes(handle.read(8), "little")
        assert json.loads(handle.read(header_len))  # a safetensors header, not a pickle


@pytest.mark.parametrize("damage, why", [
    ("truncate", "bytes"),
    ("garbage_json", "cannot parse state.json"),
    ("wrong_format", "format"),
    ("header", "safetensors"),
])
def test_a_damaged_checkpoint_raises_corrupt(tmp_path, damage, why):
    model, opt = _trained()
    tensors = _save(tmp_path, model, opt)
    state = tmp_path / "state.json"
    if damage == "truncate":
        with open(tensors, "r+b") as handle:
            handle.truncate(os.path.getsize(tensors) // 2)
    elif damage == "garbage_json":
        state.write_text("{not json")
    elif damage == "wrong_format":
        state.write_text(json.dumps(dict(json.loads(state.read_text()), format="v0")))
    else:  # same size, a broken header
        data = bytearray(open(tensors, "rb").read())
        data[8:16] = b"\xff" * 8
        open(tensors, "wb").write(bytes(data))
    with pytest.raises(checkpoint.CorruptCheckpoint, match=why):
        checkpoint.read(str(tmp_path), _params(model))


def test_tensors_of_another_model_are_corrupt_for_this_one(tmp_path):
    model, opt = _trained()
    _save(tmp_path, model, opt)
    other = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Linear(5, 2))
    with pytest.raises(checkpoint.CorruptCheckpoint, match=r"model tensor 0.weight is \(3, 4\)"):
        checkpoint.read(str(tmp_path), _params(other))
    with pytest.raises(checkpoint.CorruptCheckpoint, match="missing"):
        checkpoint.read(str(tmp_path), {**_params(model), "2.weight": torch.zeros(1)})
    ckpt = checkpoint.read(str(tmp_path))
    params = dict(enumerate(other.parameters()))
    with pytest.raises(checkpoint.CorruptCheckpoint, match="exp_avg"):
        checkpoint.check_optimizer_fits(ckpt.optimizer, params)


def test_move_aside_keeps_one_corrupt_copy(tmp_path):
    folder = tmp_path / "checkpoint"
    for n in range(2):
        folder.mkdir()
        (folder / "state.json").write_text(str(n))
        assert checkpoint.move_aside(str(folder)) == str(folder) + ".corrupt"
    assert not folder.exists() and (tmp_path / "checkpoint.corrupt" / "state.json").read_text() == "1"


# ---- through the trainer's entry point ----------------------------------------------------------
def _resumable(world, **over):
    # LoRA with dropout, so that a resume is exact only if the RNG state comes back too; a
    # checkpoint every 5 steps of 12 leaves the one of step 10 behind after the run.
    return base_config(world, method="lora", lora_dropout=0.1, max_steps=12, eval_interval=4,
                       checkpoint_interval=5, log_interval=1, **over)


@pytest.fixture(scope="module")
def straight(mini_world, tmp_path_factory):
    """An uninterrupted run, and a copy of the checkpoint it left at step 10."""
    import shutil

    from _pytest.monkeypatch import MonkeyPatch

    tmp = tmp_path_factory.mktemp("straight")
    with MonkeyPatch.context() as mp:
        code, full, _ = run_in_process(tmp, _resumable(mini_world), mp)
    assert code == 0
    saved = tmp_path_factory.mktemp("saved") / "checkpoint"
    shutil.copytree(tmp / "out" / "checkpoint", saved)
    return json.loads(full), saved


def _rerun(mini_world, straight, tmp_path, monkeypatch, capsys, damage=None):
    import shutil

    result, saved = straight
    shutil.copytree(saved, tmp_path / "out" / "checkpoint")
    if damage:
        damage(tmp_path / "out" / "checkpoint")
    capsys.readouterr()
    code, full, _ = run_in_process(tmp_path, _resumable(mini_world), monkeypatch)
    return code, json.loads(full) if full else None, capsys.readouterr().err


@pytest.mark.slow
def test_a_resumed_run_continues_bit_for_bit(mini_world, straight, tmp_path, monkeypatch, capsys):
    code, resumed, log = _rerun(mini_world, straight, tmp_path, monkeypatch, capsys)
    assert code == 0, log[-2000:]
    assert "resuming from step 10" in log
    result, _ = straight
    # Steps 11 and 12 were trained again from the checkpoint: the same losses to the last bit.
    assert resumed["curves"] == result["curves"]
    assert resumed["test_loss"] == result["test_loss"]
    assert resumed["tokens_seen"] == result["tokens_seen"] and resumed["best_step"] == result["best_step"]


def _truncate(folder):
    (tensors,) = [p for p in folder.iterdir() if p.suffix == ".safetensors"]
    with open(tensors, "r+b") as handle:
        handle.truncate(tensors.stat().st_size - 100)


def _garbage_json(folder):
    (folder / "state.json").write_text("\x00\x17 not json {")


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_truncate, _garbage_json], ids=["truncated", "garbage-json"])
def test_a_corrupt_checkpoint_restarts_from_step_0_and_the_run_completes(
        mini_world, straight, tmp_path, monkeypatch, capsys, damage):
    code, rerun, log = _rerun(mini_world, straight, tmp_path, monkeypatch, capsys, damage)
    assert code == 0, log[-2000:]
    folder = tmp_path / "out" / "checkpoint"
    assert f"checkpoint {folder} is corrupt: " in log and "; restarting from step 0" in log
    assert "resuming" not in log
    assert (tmp_path / "out" / "checkpoint.corrupt").is_dir()  # kept aside to look at
    result, _ = straight
    # From step 0 again, so the whole run is the uninterrupted one's.
    assert rerun["steps"] == 12 and rerun["curves"]["dev"][0][0] == 0
    assert rerun["test_loss"] == result["test_loss"]


@pytest.mark.slow
@pytest.mark.parametrize("split", ["dev", "test"])
def test_an_empty_split_is_invalid_config(mini_world, tmp_path, monkeypatch, capsys, split):
    empty = tmp_path / f"empty-{split}.jsonl"
    empty.write_text("\n\n")  # blank lines only: no examples
    config = base_config(mini_world, **{f"{split}_path": str(empty)})
    code, full, message = run_in_process(tmp_path, config, monkeypatch)
    assert code == outcomes.EXIT_INVALID_CONFIG == 2
    term = json.loads(message)
    assert term["outcome"] == "Failed" and term["reason"] == outcomes.INVALID_CONFIG
    assert f"the {split} split ({empty}) has no examples" in term["message"]
    assert json.loads(full)["reason"] == outcomes.INVALID_CONFIG
