"""Real bilingual text from Debian's package-description translations (DDTP), fetched offline
through apt, the way design.md describes ("Models and data that work offline").

`apt-get update` with `Acquire::Languages=en,de,fr` and a PRIVATE lists/cache directory fetches
the `Translation-<lang>` indexes of the machine's configured Debian suites without touching the
machine's own apt state. Each index maps a `Description-md5` (the id of the English original) to
a human translation, so joining two languages on the md5 gives aligned descriptions: the short
description line, and long descriptions whose paragraphs align one-to-one when the counts match.

What is pinned: the suite and files we use (bookworm/main Translation-en/de/fr) and the SHA-256
of each index as first built (PINNED_SHA256). A mirror serving different bytes still builds, but
the build prints a warning and records the digests it used in the world's manifest.json.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import subprocess
from dataclasses import dataclass

LANGUAGES = ("en", "de", "fr")
SUITE = "bookworm"
# SHA-256 of the uncompressed bookworm/main indexes used to build world v1 (InRelease of
# 11 Jul 2026). Stable-release translations change rarely; a different digest is a warning.
PINNED_SHA256 = {
    "en": "62f59c3cdca9786e4f7adf9002f9f5729a684adcb4667e58e448dec9b5a46c7f",
    "de": "adac331fc51f9a00c1b4120b4ac87423be2b1f1615d4f288c7cbc2d5258c0650",
    "fr": "1b5ce81d2dac68fb27997899d9e092b8281f984baa658c22139d8f2640aec6cc",
}
_APT_HELPER = "/usr/lib/apt/apt-helper"


class DataUnavailable(RuntimeError):
    """apt could not provide the translation indexes (no apt, not root, no network)."""


@dataclass(frozen=True)
class Description:
    md5: str
    package: str
    short: str  # the one-line synopsis
    paragraphs: tuple[str, ...]  # long description paragraphs, whitespace-normalised


def fetch_indexes(workdir: str, languages=LANGUAGES, timeout: float = 600) -> dict[str, str]:
    """Fetch Translation-<lang> indexes into workdir with a private apt state.

    Returns {lang: path of the uncompressed index}. Raises DataUnavailable with the reason.
    """
    lists = os.path.join(workdir, "lists")
    os.makedirs(os.path.join(lists, "partial"), exist_ok=True)
    os.makedirs(os.path.join(workdir, "cache", "archives", "partial"), exist_ok=True)
    cmd = [
        "apt-get", "update", "-q",
        f"-o=Dir::State::Lists={lists}",
        f"-o=Dir::Cache={os.path.join(workdir, 'cache')}",
        "-o=Dir::Cache::pkgcache=", "-o=Dir::Cache::srcpkgcache=",
        f"-o=Acquire::Languages={','.join(languages)}",
        # Only the translation indexes matter; skip AppStream metadata.
        "-o=Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false",
        "-o=Acquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false",
        "-o=Acquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false",
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataUnavailable(f"apt-get update could not run: {exc}") from None
    if done.returncode != 0:
        raise DataUnavailable(f"apt-get update failed (exit {done.returncode}): "
                              f"{done.stderr.strip()[-400:]}")
    out = {}
    for lang in languages:
        candidates = sorted(glob.glob(os.path.join(lists, f"*_dists_{SUITE}_main_i18n_Translation-{lang}*")))
        candidates = [c for c in candidates if not c.endswith(".diff")]
        if not candidates:
            raise DataUnavailable(f"no {SUITE}/main Translation-{lang} index was fetched; "
                                  f"this world recipe needs Debian {SUITE} apt sources")
        target = os.path.join(workdir, f"Translation-{lang}")
        with open(target, "wb") as handle:
            done = subprocess.run([_APT_HELPER, "cat-file", candidates[0]], stdout=handle)
        if done.returncode != 0:
            raise DataUnavailable(f"could not decompress {candidates[0]}")
        out[lang] = target
    return out


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_index(path: str) -> dict[str, Description]:
    """Parse a Translation-<lang> index (deb822 stanzas) into {md5: Description}."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = handle.read()
    out = {}
    for stanza in text.split("\n\n"):
        package = md5 = None
        desc_lines: list[str] = []
        in_desc = False
        for line in stanza.split("\n"):
            if line.startswith("Package:"):
                package = line[8:].strip()
                in_desc = False
            elif line.startswith("Description-md5:"):
                md5 = line[16:].strip()
                in_desc = False
            elif line.startswith("Description-"):
                desc_lines = [line.split(":", 1)[1].strip()]
                in_desc = True
            elif in_desc and line.startswith(" "):
                desc_lines.append(line[1:])
        if not (package and md5 and desc_lines):
            continue
        paragraphs, current = [], []
        for line in desc_lines[1:]:
            if line.strip() == ".":
                if current:
                    paragraphs.append(_normalise(" ".join(current)))
                current = []
            else:
                current.append(line.strip())
        if current:
            paragraphs.append(_normalise(" ".join(current)))
        out[md5] = Description(md5=md5, package=package, short=_normalise(desc_lines[0]),
                               paragraphs=tuple(paragraphs))
    return out


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# "Sentence-like": natural-language text of 3–24 words (short enough for the tiny models
# sequence budget), not lists of file names or URLs.
_MIN_WORDS, _MAX_WORDS = 3, 24
_BAD = re.compile(r"https?://|www\.|[{}<>|\\]|\S+/\S+/\S+|%[sd]")


def sentence_like(text: str) -> bool:
    words = text.split()
    return _MIN_WORDS <= len(words) <= _MAX_WORDS and not _BAD.search(text) and any(
        c.isalpha() for c in text)


def aligned_pairs(source: dict[str, Description], target: dict[str, Description]) -> list[dict]:
    """Translation pairs from descriptions present in both languages.

    Each pair is {"id", "doc", "source", "target"}: the short descriptions, plus long-description
    paragraphs where both sides have the same number of paragraphs (then they align one-to-one).
    Only sentence-like pairs with a plausible length ratio are kept; "doc" is the description's
    md5, which the train/dev/test split hashes so a description never straddles splits.
    """
    pairs = []
    for md5 in sorted(set(source) & set(target)):
        s, t = source[md5], target[md5]
        candidates = [(s.short, t.short)]
        if len(s.paragraphs) == len(t.paragraphs):
            candidates += list(zip(s.paragraphs, t.paragraphs))
        for i, (a, b) in enumerate(candidates):
            if a == b or not (sentence_like(a) and sentence_like(b)):
                continue
            ratio = len(a) / max(1, len(b))
            if not 0.5 <= ratio <= 2.0:
                continue
            pairs.append({"id": f"{md5}-{i}", "doc": md5, "source": a, "target": b})
    return pairs


def summary_pairs(descriptions: dict[str, Description], lang: str, max_words: int = 60) -> list[dict]:
    """Long description (first paragraphs, ≤ max_words) → short description, one language."""
    pairs = []
    for md5 in sorted(descriptions):
        d = descriptions[md5]
        words: list[str] = []
        for paragraph in d.paragraphs:
            if len(words) + len(paragraph.split()) > max_words:
                break
            words += paragraph.split()
        doc = " ".join(words)
        if len(words) < 8 or not sentence_like(d.short) or _BAD.search(doc):
            continue
        pairs.append({"id": f"{md5}-{lang}", "doc": md5, "source": doc, "target": d.short,
                      "lang": lang})
    return pairs


def split_of(doc_id: str, dev_percent: int = 3, test_percent: int = 4) -> str:
    """'train', 'dev' or 'test' by a hash of the description id: stable across languages and
    runs, so the German side of a test description is never a training target of any task."""
    bucket = int(hashlib.sha256(doc_id.encode()).hexdigest()[:8], 16) % 100
    if bucket < test_percent:
        return "test"
    if bucket < test_percent + dev_percent:
        return "dev"
    return "train"
