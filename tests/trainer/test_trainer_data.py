"""Data pipeline pieces: nested seeded subsets, templates, target-only loss masks, batch order."""

import pytest

from ftscale_trainer import data
from ftscale_trainer.config import ConfigError, TrainConfig

EXAMPLES = [data.Example(f"source {i}", f"target {i}") for i in range(100)]


def _config(**extra):
    return TrainConfig.from_dict({"model": "m", "method": "fmt", "data_size": 10, "task": "toy-en-de",
                                  "source_lang": "English", "target_lang": "German", **extra})


def test_subsets_are_nested_per_seed_and_differ_across_seeds():
    small, large = data.subset(EXAMPLES, 10, seed=0), data.subset(EXAMPLES, 40, seed=0)
    assert large[:10] == small
    assert data.subset(EXAMPLES, 10, seed=1) != small
    with pytest.raises(ConfigError, match="exceeds the 100 training examples"):
        data.subset(EXAMPLES, 101, seed=0)


def test_templates():
    e = data.Example("Hello world", "Hallo Welt")
    assert data.render(e, _config()) == ("English: Hello world\nGerman:", " Hallo Welt")
    assert data.render(e, _config(), source_lang="French")[0].startswith("French: ")
    prompt, _ = data.render(data.Example("Doc", "Sum", lang="de"), _config(template="summarize"))
    assert prompt == "Summarize the following document in German:\nDoc\nSummary:"
    assert data.render(e, _config(template="Q: {source} A:"))[0] == "Q: Hello world A:"


def test_collate_masks_everything_but_the_target():
    batch = [data.Encoded((1, 10, 11), (20, 21, 2)), data.Encoded((1, 12), (22, 2))]
    input_ids, mask, labels = data.collate(batch, pad_id=0)
    assert input_ids.tolist() == [[1, 10, 11, 20, 21], [1, 12, 22, 0, 0]]
    # Positions whose NEXT token is a target token (including EOS).
    assert mask.tolist() == [[False, False, True, True, True], [False, True, True, False, False]]
    assert labels.tolist() == [20, 21, 2, 22, 2]
    assert input_ids[mask].numel() == labels.numel()


def test_batch_stream_is_a_pure_function_of_seed_and_step_and_covers_each_epoch():
    stream = data.BatchStream(size=10, batch_size=4, seed=3)
    first_epochs = [i for step in range(5) for i in stream.indices(step)]
    assert sorted(first_epochs[:10]) == list(range(10)) and sorted(first_epochs[10:20]) == list(range(10))
    fresh = data.BatchStream(size=10, batch_size=4, seed=3)
    assert fresh.indices(4) == stream.indices(4)  # resuming at step 4 sees the same batch
    assert data.BatchStream(size=10, batch_size=4, seed=4).indices(0) != stream.indices(0)


def test_lazy_jsonl_parses_only_what_is_used(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join('{"source": "s%d", "target": "t%d"}\n' % (i, i) for i in range(50)) + "not json\n")
    rows = data.load_examples(str(path), "jsonl", "source", "target", lazy=True)
    assert len(rows) == 51
    picked = data.subset(data.LazyRows(rows[:50]), 5, seed=0)
    assert all(isinstance(e, data.Example) for e in picked)
    with pytest.raises(ConfigError, match="not a JSON object"):
        data.parse_rows(data.LazyRows(rows[50:]))


@pytest.mark.slow
def test_hf_datasets_saved_to_disk_load_with_custom_fields(tmp_path):
    import datasets

    rows = [{"article": f"doc {i}", "summary": f"sum {i}", "lang": "de"} for i in range(6)]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    datasets.Dataset.from_list(rows[:2]).save_to_disk(str(tmp_path / "single"))
    got = data.load_examples(str(tmp_path / "dd"), "auto", "article", "summary", split="train")
    assert got[3] == data.Example("doc 3", "sum 3", "de")
    assert len(data.load_examples(str(tmp_path / "single"), "hf_disk", "article", "summary")) == 2
    with pytest.raises(ConfigError, match="without a 'test' split"):
        data.load_examples(str(tmp_path / "dd"), "auto", "article", "summary", split="test")
    with pytest.raises(ConfigError, match="lacks 'source'"):
        data.load_examples(str(tmp_path / "single"), "hf_disk", "source", "target")
