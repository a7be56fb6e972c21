"""Toy-world naming (torch-free) and the data recipe's pure parts (fast)."""

import json

import pytest

from ftscale_trainer import ddtp, synthetic, world


@pytest.fixture()
def fake_world(tmp_path, monkeypatch):
    monkeypatch.setenv("FTSCALE_CACHE", str(tmp_path))
    root = tmp_path / "toy" / world.WORLD_VERSION
    root.mkdir(parents=True)
    (root / "family.json").write_text(json.dumps({"version": world.WORLD_VERSION, "models": [
        {"name": "tiny-1", "non_embedding_params": 1000, "total_params": 5000, "hidden_size": 8,
         "layers": 1, "checkpoints": [{"tokens": 10, "path": "models/tiny-1/tokens-10", "dev_loss": 5.0},
                                      {"tokens": 20, "path": "models/tiny-1/tokens-20", "dev_loss": 4.0}]}]}))
    return root


def test_toy_sources_resolve_to_checkpoints_and_x_values(fake_world):
    final = world.resolve_model("toy:tiny-1")
    assert final.path == str(fake_world / "models/tiny-1/tokens-20")
    assert (final.model_params, final.pretrain_tokens) == (1000, 20)
    early = world.resolve_model("toy:tiny-1@10")
    assert early.pretrain_tokens == 10 and early.path.endswith("tokens-10")
    assert world.model_sources() == ["toy:tiny-1", "toy:tiny-1@10"]


@pytest.mark.parametrize("source, needle", [
    ("toy:tiny-9", "the family has tiny-1"),
    ("toy:tiny-1@15", "has 10, 20"),
    ("toy:tiny-1@many", "token count"),
])
def test_unresolvable_sources_say_what_exists(fake_world, source, needle):
    with pytest.raises(world.WorldError, match=needle):
        world.resolve_model(source)


def test_unbuilt_world_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("FTSCALE_CACHE", str(tmp_path))
    with pytest.raises(world.WorldError, match="ftscale toy build"):
        world.family()
    with pytest.raises(world.WorldError, match="ftscale toy build"):
        world.task_files("toy-en-de")


SAMPLE_EN = """Package: foo
Description-md5: aaa
Description-en: Tool to convert pictures into text files
 The tool reads many image formats and writes plain text.
 .
 It is fast and simple to use for everyday tasks.

Package: bar
Description-md5: bbb
Description-en: Library for http://example.org access
 See http://example.org for details.
"""
SAMPLE_DE = """Package: foo
Description-md5: aaa
Description-de: Werkzeug zum Umwandeln von Bildern in Textdateien
 Das Werkzeug liest viele Bildformate und schreibt
 reinen Text.
 .
 Es ist schnell und einfach im Alltag zu benutzen.
"""


def test_ddtp_parsing_and_alignment(tmp_path):
    (tmp_path / "en").write_text(SAMPLE_EN)
    (tmp_path / "de").write_text(SAMPLE_DE)
    en, de = ddtp.parse_index(str(tmp_path / "en")), ddtp.parse_index(str(tmp_path / "de"))
    assert set(en) == {"aaa", "bbb"} and set(de) == {"aaa"}
    assert de["aaa"].paragraphs[0] == "Das Werkzeug liest viele Bildformate und schreibt reinen Text."
    pairs = ddtp.aligned_pairs(en, de)
    assert [p["id"] for p in pairs] == ["aaa-0", "aaa-1", "aaa-2"]
    assert pairs[0]["target"] == "Werkzeug zum Umwandeln von Bildern in Textdateien"
    assert not ddtp.sentence_like("Library for http://example.org access")


def test_split_by_description_hash_is_stable_and_shared_across_languages():
    splits = [ddtp.split_of(f"doc{i}") for i in range(5000)]
    assert splits == [ddtp.split_of(f"doc{i}") for i in range(5000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "dev", "test")}
    assert 0.02 < share["dev"] < 0.04 and 0.03 < share["test"] < 0.05


def test_synthetic_fallback_is_deterministic_and_parallel():
    a, b = synthetic.generate_pairs(50, seed=3), synthetic.generate_pairs(50, seed=3)
    assert a == b
    assert [p["target"] for p in a["en-de"]] == [p["target"] for p in a["fr-de"]]
    assert a["en-de"][0]["source"] == a["en-fr"][0]["source"]


def _with_sweep(root, rates):
    doc = json.loads((root / "family.json").read_text())
    doc["models"][0]["finetune"] = {m: {"learning_rate": r, "task": "toy-en-de", "data_size": 100,
                                        "dev_loss": {f"{r:g}": 4.0}} for m, r in rates.items()}
    (root / "family.json").write_text(json.dumps(doc))


def test_swept_learning_rates_resolve_with_every_checkpoint(fake_world):
    assert world.resolve_model("toy:tiny-1").learning_rates == {}  # a world without a sweep
    _with_sweep(fake_world, {"fmt": 3e-4, "lora": 3e-3, "prompt": 0.1})
    assert world.family()[0].learning_rates == {"fmt": 3e-4, "lora": 3e-3, "prompt": 0.1}
    # an intermediate checkpoint uses its model's rates: the sweep ran on the final one
    assert world.resolve_model("toy:tiny-1@10").learning_rates["lora"] == 3e-3


def test_a_toy_run_takes_the_swept_rate_unless_the_config_sets_one(fake_world):
    pytest.importorskip("torch")
    from ftscale_trainer.config import TrainConfig
    from ftscale_trainer.train import resolve_identity

    _with_sweep(fake_world, {"fmt": 3e-4, "lora": 3e-3})
    doc = {"model": "tiny-1", "model_source": "toy:tiny-1", "data_size": 50, "task": "toy-en-de"}
    fmt, _ = resolve_identity(TrainConfig.from_dict(dict(doc, method="fmt")))
    assert fmt.learning_rate == 3e-4
    mine, _ = resolve_identity(TrainConfig.from_dict(dict(doc, method="fmt", learning_rate=0.01)))
    assert mine.learning_rate == 0.01
    prompt, _ = resolve_identity(TrainConfig.from_dict(dict(doc, method="prompt")))
    assert prompt.learning_rate == 0.1  # not swept in this world: the tiny default


def test_the_sweep_picks_the_lowest_dev_loss_and_the_lower_rate_on_a_tie():
    from ftscale_trainer import toy

    assert toy.pick_rate({1e-3: 4.2, 3e-3: 4.1, 1e-2: 4.3}) == 3e-3
    assert toy.pick_rate({1e-3: 4.1, 3e-3: 4.1}) == 1e-3
