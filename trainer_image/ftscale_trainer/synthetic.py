"""Generated fallback language pairs, used only when Debian's translation indexes cannot be had
(no apt, not root, no network). Deterministic, tiny, and clearly marked as synthetic in the
world's manifest: results on it say nothing about real text.

"English" sentences come from a small grammar; "German" and "French" are invented lexicons
(a fixed, seeded rewrite of each word) with German putting the verb last, so a model has to
learn both word translation and reordering.
"""

from __future__ import annotations

import random

_NOUNS = ("cat dog house tree river city window garden teacher student book letter friend "
          "car road machine program file system network server user window table door").split()
_ADJS = "small big old new red green quiet fast slow bright dark simple strong".split()
_VERBS = "sees finds builds opens reads writes likes moves carries needs keeps starts".split()


def _lexicon(words: list[str], seed: int) -> dict[str, str]:
    rng = random.Random(seed)
    consonants, vowels = "bdfgklmnprstvz", "aeiou"
    out = {}
    for word in words:
        syllables = max(1, len(word) // 3)
        out[word] = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables))
        out[word] += rng.choice(("en", "er", "ig", "ung", "e", "on", "eux", "ette"))
    return out


def _sentence(rng: random.Random) -> tuple[list[str], str]:
    subj = [rng.choice(_ADJS), rng.choice(_NOUNS)] if rng.random() < 0.5 else [rng.choice(_NOUNS)]
    obj = [rng.choice(_ADJS), rng.choice(_NOUNS)] if rng.random() < 0.5 else [rng.choice(_NOUNS)]
    verb = rng.choice(_VERBS)
    return ["the", *subj, verb, "the", *obj], verb


def generate_pairs(n: int, seed: int = 0) -> dict[str, list[dict]]:
    """{"en-de": [...], "en-fr": [...], "fr-de": [...]} with n pairs each (same sentences)."""
    words = ["the", *_NOUNS, *_ADJS, *_VERBS]
    de, fr = _lexicon(words, seed + 1), _lexicon(words, seed + 2)
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"en-de": [], "en-fr": [], "fr-de": []}
    for i in range(n):
        en_words, verb = _sentence(rng)
        de_words = [w for w in en_words if w != verb] + [verb]  # verb-final
        en_text = " ".join(en_words).capitalize() + "."
        de_text = " ".join(de[w] for w in de_words).capitalize() + "."
        fr_text = " ".join(fr[w] for w in en_words).capitalize() + "."
        doc = f"syn{i:06d}"
        out["en-de"].append({"id": doc, "doc": doc, "source": en_text, "target": de_text})
        out["en-fr"].append({"id": doc, "doc": doc, "source": en_text, "target": fr_text})
        out["fr-de"].append({"id": doc, "doc": doc, "source": fr_text, "target": de_text})
    return out
