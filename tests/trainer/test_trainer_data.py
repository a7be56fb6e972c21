"""Data pipeline pieces: nested seeded subsets, templates, target-only loss masks, batch order."""

import json
import random

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


# ---- truncation keeps the template ---------------------------------------------------------
class CharCodec:
    """One token per character (BOS 1, EOS 2): lengths are easy to reason about."""

    bos_id, eos_id, pad_id = 1, 2, 0

    def encode_batch(self, texts):
        return [[ord(c) + 10 for c in t] for t in texts]

    def decode(self, ids):
        return "".join(chr(i - 10) for i in ids if i >= 10)


LONG_DE = ("Dieses Paket enthält die Übersetzungen für den Texteditor, damit Menüs und Meldungen "
           "auf Deutsch erscheinen; außerdem größere Wörterbücher für die Rechtschreibprüfung.")


def test_cut_text_backs_off_to_a_word_boundary_only_when_one_is_near():
    assert data.cut_text("alpha beta gamma", 100) == "alpha beta gamma"
    assert data.cut_text("alpha beta gamma", 13) == "alpha beta"
    assert data.cut_text("alpha beta gamma", 11) == "alpha beta"  # the cut falls on the space
    assert data.cut_text("Donaudampfschifffahrt ist", 10) == "Donaudampf"  # no space near: mid-word
    assert data.cut_text("中文没有空格的句子", 4) == "中文没有"
    assert data.cut_text("abc", 0) == ""


@pytest.mark.parametrize("template, cue", [("summarize", "\nSummary:"), ("translate", "\nGerman:"),
                                           ("Q: {source}\nA:", "\nA:")])
def test_long_sources_lose_their_end_never_the_instruction_or_the_cue(template, cue):
    config = _config(template=template, max_source_tokens=90)
    codec = CharCodec()
    examples = [data.Example(LONG_DE, "Übersetzungen", lang="de"), data.Example("Kurz.", "Kurz")]
    long, short = data.encode(examples, config, codec)
    assert len(long.source_ids) <= 90 and long.source_ids[0] == codec.bos_id
    prompt = codec.decode(long.source_ids)
    assert prompt.endswith(cue)
    if template == "summarize":
        assert prompt.startswith("Summarize the following document in German:\n")
    kept = prompt[prompt.index("Dieses"):-len(cue)]
    assert LONG_DE.startswith(kept) and 10 < len(kept) < len(LONG_DE)
    # As much source as the budget allows: one more word would not fit.
    next_words = LONG_DE[len(kept):].split()[:1]
    assert len(long.source_ids) + 1 + len(next_words[0]) > 90
    # A prompt that fits is encoded exactly as before.
    assert codec.decode(short.source_ids) == data.render(examples[1], config)[0]
    assert codec.decode(long.target_ids[:-1]) == data.render(examples[0], config)[1]  # untouched


def test_a_budget_smaller_than_the_template_is_a_config_error():
    config = _config(template="summarize", max_source_tokens=30)
    with pytest.raises(ConfigError, match="cannot hold the prompt template"):
        data.encode([data.Example(LONG_DE, "x", lang="de")], config, CharCodec())


def test_truncation_with_a_real_bpe_tokenizer_keeps_the_cue(mini_world):
    from ftscale_trainer.models import Codec

    codec = Codec(str(mini_world / "model"))
    config = _config(template="summarize", max_source_tokens=40)
    words = "the small cat sees the big dog near the old house".split()
    examples = [data.Example(" ".join(words * k), "the cat", lang="fr") for k in (1, 3, 8)]
    cue = codec.encode_batch(["\nSummary:"])[0]
    for e, enc in zip(examples, data.encode(examples, config, codec)):
        assert len(enc.source_ids) <= 40
        assert list(enc.source_ids[-len(cue):]) == cue
        text = codec.decode(list(enc.source_ids))
        assert text.startswith("Summarize the following document in French:")
        body = text.split("\n")[1]
        assert e.source.startswith(body) and body


def test_multilingual_subsets_keep_the_language_mix_and_stay_nested(tmp_path):
    langs = ["en"] * 66 + ["fr"] * 20 + ["de"] * 14
    rows = [data.Example(f"doc {i}", f"sum {i}", lang) for i, lang in enumerate(langs)]
    for seed in (0, 1, 2):
        full = data.subset(rows, 100, seed)
        for size in (10, 25, 50):
            picked = data.subset(rows, size, seed)
            assert picked == full[:size]  # nested
            for lang, share in (("en", 0.66), ("fr", 0.20), ("de", 0.14)):
                assert abs(sum(e.lang == lang for e in picked) - share * size) <= 1, (seed, size, lang)
    assert data.subset(rows, 20, 0) != data.subset(rows, 20, 1)
    # The same from a lazily read JSONL file (the language read from the raw line).
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"source": e.source, "target": e.target, "lang": e.lang},
                                       ensure_ascii=False) + "\n" for e in rows))
    lazy = data.load_examples(str(path), "jsonl", "source", "target", lazy=True)
    assert data.subset(lazy, 30, 4) == data.subset(rows, 30, 4)
    # Examples without a language draw as before: the first D_f of the seeded permutation
    # (every translation study's subsets stay what they were).
    plain = [data.Example(e.source, e.target) for e in rows]
    order = list(range(100))
    random.Random("ftscale-subset-4").shuffle(order)
    assert data.subset(plain, 30, 4) == [plain[i] for i in order[:30]]
