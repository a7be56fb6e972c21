"""Generation metrics: ROUGE-L that reads every script, BLEU with a chosen tokenizer, and each
score with its sample size and a bootstrap interval (ftscale_trainer.evaluate)."""

import random
import unicodedata

import pytest

from ftscale_trainer import evaluate
from ftscale_trainer.config import ConfigError, TrainConfig

TOKENIZE = evaluate.UnicodeWordTokenizer().tokenize


def test_rouge_tokens_keep_umlauts_accents_and_cjk():
    assert TOKENIZE("Übersetzungsprogramm für Käse, größer") == \
        ["übersetzungsprogramm", "für", "käse", "grösser"]  # casefold: ß → ss
    assert TOKENIZE("Éditeur de texte léger — très rapide (Noël)") == \
        ["éditeur", "de", "texte", "léger", "très", "rapide", "noël"]
    # The same word typed precomposed or with a combining mark is the same token.
    assert TOKENIZE(unicodedata.normalize("NFD", "für Çà")) == TOKENIZE("für Çà") == ["für", "çà"]
    assert TOKENIZE("中文分词 mp3_tool") == ["中", "文", "分", "词", "mp3", "tool"]


def test_rouge_tokens_equal_rouge_scores_default_on_ascii():
    from rouge_score import tokenizers

    default = tokenizers.DefaultTokenizer(use_stemmer=False)
    for text in ("The quick brown fox, 42 times!", "don't stop_me now: v1.2-beta", "  "):
        assert TOKENIZE(text) == default.tokenize(text)


def test_rouge_l_equals_rouge_score_with_the_unicode_tokenizer():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=evaluate.UnicodeWordTokenizer())
    words = "der die das für über café très à la de le un une ein eine".split()
    rng = random.Random(0)
    for _ in range(200):
        hyp = " ".join(rng.choices(words, k=rng.randint(0, 9)))
        ref = " ".join(rng.choices(words, k=rng.randint(0, 9)))
        expected = scorer.score(ref, hyp)["rougeL"].fmeasure
        assert evaluate.rouge_l_f1(TOKENIZE(hyp), TOKENIZE(ref)) == pytest.approx(expected, abs=1e-12)


def test_german_and_french_rouge_counts_whole_words():
    from rouge_score import rouge_scorer

    hyp, ref = "Programm für Übersetzungen", "Ein Werkzeug für Übersetzungen"
    scores = evaluate.generation_scores([hyp], [ref], ["rougeL"])
    # LCS "für übersetzungen": P = 2/3, R = 2/4 → F1 = 4/7.
    assert scores["rougeL"] == pytest.approx(4 / 7, abs=1e-6)
    # rouge_score's default tokenizer drops ü and Ü: "f r bersetzungen" vs "ein werkzeug f r bersetzungen".
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ref, hyp)["rougeL"].fmeasure
    assert default != pytest.approx(4 / 7)
    fr = evaluate.generation_scores(["éditeur très léger"], ["un éditeur léger"], ["rougeL"])
    assert fr["rougeL"] == pytest.approx(2 / 3, abs=1e-6)  # LCS "éditeur léger": P = R = 2/3


def test_scores_carry_their_count_and_a_bootstrap_interval():
    import sacrebleu

    rng = random.Random(1)
    words = "the a cat dog sees finds small big house tree".split()
    refs = [" ".join(rng.choices(words, k=8)) for _ in range(80)]
    hyps = [" ".join(w if rng.random() < 0.7 else rng.choice(words) for w in r.split()) for r in refs]
    scores = evaluate.generation_scores(hyps, refs, ["bleu", "rougeL"])
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-3)
    for name in ("bleu", "rougeL"):
        assert scores[f"{name}_n"] == 80
        assert scores[f"{name}_ci_low"] < scores[name] < scores[f"{name}_ci_high"]
    # A larger sample of the same kind narrows the interval.
    more = evaluate.generation_scores(hyps * 8, refs * 8, ["bleu"])
    assert more["bleu_ci_high"] - more["bleu_ci_low"] < 0.6 * (scores["bleu_ci_high"] - scores["bleu_ci_low"])
    # Reproducible: the same inputs give the same interval.
    assert evaluate.generation_scores(hyps, refs, ["bleu"]) == {k: v for k, v in scores.items()
                                                               if k.startswith("bleu")}
    perfect = evaluate.generation_scores(refs, refs, ["bleu", "rougeL"])
    assert perfect["bleu_ci_low"] == perfect["bleu_ci_high"] == pytest.approx(100.0)
    assert perfect["rougeL_ci_low"] == perfect["rougeL"] == 1.0
    assert evaluate.generation_scores([], [], ["bleu", "rougeL"]) == {"bleu_n": 0, "rougeL_n": 0}


def test_bleu_tokenizer_is_a_setting():
    hyp, ref = ["我喜欢猫和狗"], ["我喜欢狗和猫"]
    # 13a sees each sentence as one word (no spaces): no match at all; zh splits characters.
    assert evaluate.generation_scores(hyp, ref, ["bleu"])["bleu"] == 0.0
    assert evaluate.generation_scores(hyp, ref, ["bleu"], bleu_tokenizer="zh")["bleu"] > 20
    base = {"model": "m", "method": "fmt", "data_size": 1, "task": "toy-en-de", "generation": ["bleu"]}
    assert TrainConfig.from_dict({**base, "bleu_tokenizer": "intl"}).bleu_tokenizer == "intl"
    with pytest.raises(ConfigError, match="bleu_tokenizer must be one of"):
        TrainConfig.from_dict({**base, "bleu_tokenizer": "spacy"})


def test_preflight_refuses_a_flores_tokenizer_without_sentencepiece(monkeypatch):
    base = {"model": "m", "method": "fmt", "data_size": 1, "task": "toy-en-de"}
    config = TrainConfig.from_dict({**base, "generation": ["bleu"], "bleu_tokenizer": "flores200"})
    real = evaluate.importlib.util.find_spec
    monkeypatch.setattr(evaluate.importlib.util, "find_spec",
                        lambda name, *a: None if name == "sentencepiece" else real(name, *a))
    with pytest.raises(ConfigError, match="flores200 needs the sentencepiece package"):
        evaluate.preflight(config)
    evaluate.preflight(TrainConfig.from_dict({**base, "generation": ["rougeL"],
                                              "bleu_tokenizer": "flores200"}))  # no BLEU: fine
    evaluate.preflight(TrainConfig.from_dict({**base, "generation": ["bleu"]}))


def test_bleu_tokenizer_flows_from_the_study_spec_to_the_trainer():
    from ftscale import grid
    from ftscale.spec import StudyValidationError, load_study

    def study(generation):
        return {"apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy",
                "metadata": {"name": "zh"},
                "spec": {"task": {"name": "toy-en-de"}, "models": [{"name": "a", "source": "toy:a"}],
                         "methods": [{"name": "fmt"}], "dataSizes": [10], "seeds": [0],
                         "evaluation": {"generation": generation}}}

    def trainer_doc(generation):
        s = load_study(study(generation)).spec
        return grid.trainer_config("zh", s, grid.expand(s)[0])

    doc = trainer_doc({"metrics": ["bleu"], "bleuTokenizer": "zh"})
    assert TrainConfig.from_dict(doc).bleu_tokenizer == "zh"
    assert trainer_doc({"metrics": ["bleu"]})["bleu_tokenizer"] == "13a"  # the CRD's default
    assert "bleu_tokenizer" not in trainer_doc({"metrics": ["rougeL"]})
    with pytest.raises(StudyValidationError, match="bleuTokenizer"):
        trainer_doc({"metrics": ["bleu"], "bleuTokenizer": "spacy"})
