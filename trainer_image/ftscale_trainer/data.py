"""Finetuning data: load source/target examples, pick the D_f subset, apply the prompt template,
tokenize, and cut the step-by-step batch stream.

Sources: a built-in toy task (world.TASKS), a JSONL file, or a Hugging Face dataset saved with
`save_to_disk` (loaded with `datasets.load_from_disk`, imported only then). Every example has a
source and a target field; an optional "lang" field names the target language per example
(multilingual summarization).

The D_f subset is the first D_f examples of a seeded permutation of the training split, so for
one seed a larger D_f contains every smaller one (nested), and different seeds draw different
subsets (the paper averages over such random subsets, §2.1 item 6).
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, replace

from ftscale_trainer.config import ConfigError, TrainConfig

LANGUAGE_NAMES = {"en": "English", "de": "German", "fr": "French", "zh": "Chinese",
                  "es": "Spanish", "hi": "Hindi", "tr": "Turkish", "pt": "Portuguese"}
# The paper's summarization prompt (§3.1), verbatim.
SUMMARIZE_PROMPT = "Summarize the following document in {lang}:"


@dataclass(frozen=True)
class Example:
    source: str
    target: str
    lang: str | None = None  # target language code, when the file gives one per example


@dataclass(frozen=True)
class Encoded:
    source_ids: tuple[int, ...]  # BOS + templated source (source text cut to fit max_source_tokens)
    target_ids: tuple[int, ...]  # target + EOS, cut to max_target_tokens

    @property
    def length(self) -> int:
        return len(self.source_ids) + len(self.target_ids)


# ---- loading ---------------------------------------------------------------------------------
class LazyRows(list):
    """The raw lines of a JSONL file; a line is parsed only when its example is used (a D_f
    subset of a 20K-line split parses D_f lines, which is most of a toy run's start-up)."""


def load_examples(path: str, fmt: str, source_field: str, target_field: str,
                  split: str | None = None, lazy: bool = False) -> list[Example]:
    """Read examples from a JSONL file or an HF dataset folder. Raises ConfigError when the
    file is missing or lacks the fields (retrying cannot help). With `lazy`, a JSONL file
    gives a list of unparsed lines; `subset()` and `parse_rows()` turn them into Examples."""
    if not os.path.exists(path):
        raise ConfigError(f"data file {path} does not exist")
    if fmt == "auto":
        fmt = "hf_disk" if os.path.isdir(path) else "jsonl"
    rows: list[dict]
    if fmt == "jsonl" and lazy:
        with open(path, encoding="utf-8") as handle:
            return LazyRows((path, line, source_field, target_field) for line in handle if line.strip())
    if fmt == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError:
                        raise ConfigError(f"{path}:{number} is not a JSON object") from None
    else:
        import datasets  # heavy import: only for datasets saved to disk

        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ConfigError(f"{path} is a DatasetDict without a {split!r} split "
                                  f"(it has {', '.join(ds)})")
            ds = ds[split]
        rows = list(ds)
    examples = []
    for i, row in enumerate(rows):
        if source_field not in row or target_field not in row:
            raise ConfigError(f"{path}: example {i} lacks {source_field!r}/{target_field!r} "
                              f"(set source_field/target_field; it has {sorted(row)})")
        examples.append(Example(str(row[source_field]), str(row[target_field]), row.get("lang")))
    return examples


# What each evaluation split is for: named in the error when it is empty.
SPLIT_PURPOSE = {
    "dev": "the dev loss selects the checkpoint that is reported (paper §3.6), so a run "
           "without dev examples would report its last step unselected",
    "test": "the test loss is the run's result; with no test examples it would be 0/0 (NaN)",
    "zero-shot": "its loss would be 0/0 (NaN)",
}


def require_examples(examples: list, split: str, source: str) -> None:
    """Raise ConfigError when an evaluation split has no examples (an empty file, or only blank
    lines): `split` is "dev", "test" or "zero-shot", `source` the file or task it came from."""
    if len(examples) == 0:
        raise ConfigError(f"the {split} split ({source}) has no examples: "
                          f"{SPLIT_PURPOSE.get(split, 'it cannot be evaluated')}")


def _parse_lazy(item) -> Example:
    path, line, source_field, target_field = item
    try:
        row = json.loads(line)
    except ValueError:
        raise ConfigError(f"{path}: a line is not a JSON object: {line[:80]!r}") from None
    if not isinstance(row, dict) or source_field not in row or target_field not in row:
        raise ConfigError(f"{path}: an example lacks {source_field!r}/{target_field!r} "
                          f"(set source_field/target_field): {line[:80]!r}")
    return Example(str(row[source_field]), str(row[target_field]), row.get("lang"))


def parse_rows(examples: list) -> list[Example]:
    return [_parse_lazy(e) for e in examples] if isinstance(examples, LazyRows) else list(examples)


def subset(examples: list, data_size: int, seed: int) -> list[Example]:
    """The nested D_f subset for a seed. Raises ConfigError if D_f exceeds the split.

    When the examples name their language (multilingual summarization), the subset keeps the
    split's language mix at every size, as the paper does for MLSum ("we keep the mixing ratio
    over different languages fixed"): a plain random draw of 50 from a 66/21/14 % mix gives
    anywhere from 3 to 12 German examples depending on the seed.
    """
    if data_size > len(examples):
        raise ConfigError(f"data_size {data_size} exceeds the {len(examples)} training examples")
    order = list(range(len(examples)))
    random.Random(f"ftscale-subset-{seed}").shuffle(order)
    langs = [_lang_of(e) for e in examples]
    if len(set(langs)) > 1:
        order = mixed_prefix(order, langs, data_size)
    chosen = [examples[i] for i in order[:data_size]]
    return parse_rows(LazyRows(chosen)) if isinstance(examples, LazyRows) else chosen


_LANG_FIELD = re.compile(r'"lang"\s*:\s*"([^"]*)"')


def _lang_of(example) -> str | None:
    """An example's language without parsing the whole JSON line of a lazy row."""
    if isinstance(example, Example):
        return example.lang
    match = _LANG_FIELD.search(example[1])
    return match.group(1) if match else None


def mixed_prefix(order: list[int], langs: list, size: int) -> list[int]:
    """The first `size` indices of `order` re-interleaved so that every prefix holds each
    language in (within one example of) its share of the whole list.

    Each position takes the next index, in `order`, of the language furthest behind its share
    (ties: the language that comes first in `order`). Every prefix of the result is the result
    for a smaller size, so the subsets stay nested.
    """
    queues: dict = {}
    for i in order:
        queues.setdefault(langs[i], []).append(i)
    share = {lang: len(q) / len(order) for lang, q in queues.items()}
    taken = dict.fromkeys(queues, 0)
    out = []
    for k in range(1, size + 1):
        lang = max((lang for lang in queues if taken[lang] < len(queues[lang])),
                   key=lambda lang: share[lang] * k - taken[lang])
        out.append(queues[lang][taken[lang]])
        taken[lang] += 1
    return out


# ---- templates -------------------------------------------------------------------------------
def render(example: Example, config: TrainConfig, source_lang: str | None = None) -> tuple[str, str]:
    """(prompt text, target text) for one example under the config's template.

    The target of translate-style templates starts with a space because the prompt ends with
    "German:"; byte-level BPE then tokenizes the target as running text.
    """
    src_lang = source_lang or config.source_lang or "Source"
    tgt_lang = (LANGUAGE_NAMES.get(example.lang, example.lang) if example.lang
                else config.target_lang) or "Target"
    if config.template == "translate":
        return f"{src_lang}: {example.source}\n{tgt_lang}:", " " + example.target
    if config.template == "summarize":
        return f"{SUMMARIZE_PROMPT.format(lang=tgt_lang)}\n{example.source}\nSummary:", " " + example.target
    if config.template == "plain":
        return f"{example.source}\n", example.target
    return (config.template.format(source=example.source, source_lang=src_lang,
                                   target_lang=tgt_lang), example.target)


def encode(examples: list[Example], config: TrainConfig, codec, source_lang: str | None = None) -> list[Encoded]:
    """Tokenize examples (batched) into BOS+prompt and target+EOS, each side within its cap.

    A prompt over `max_source_tokens` loses the end of its *source text*, never the template
    around it: the instruction and the trailing cue ("Summary:", "German:") are what tell the
    model what to produce, and cutting the token sequence itself would drop the cue.
    Raises ConfigError when the template alone does not fit.
    """
    rendered = [render(e, config, source_lang) for e in examples]
    prompts = codec.encode_batch([p for p, _ in rendered])
    targets = codec.encode_batch([t for _, t in rendered])
    bos = [codec.bos_id] if codec.bos_id is not None else []
    budget = config.max_source_tokens - len(bos)
    over = [i for i, p in enumerate(prompts) if len(p) > budget]
    if over:
        fitted = fit_sources([examples[i] for i in over], [prompts[i] for i in over], budget,
                             config, codec, source_lang)
        for i, ids in zip(over, fitted):
            prompts[i] = ids
    out = []
    for p, t in zip(prompts, targets):
        tgt = t[: config.max_target_tokens - 1] + [codec.eos_id]
        out.append(Encoded(tuple(bos + p), tuple(tgt)))
    return out


# Cutting at a word boundary reads better than mid-word, but not at any price: only when the
# last whitespace is at most this many characters (or a fifth of the text kept) before the cut.
# A long German compound still fits in the window; CJK text has no whitespace and is cut as is.
_WORD_CUT_WINDOW = 16


def cut_text(text: str, chars: int) -> str:
    """The first `chars` characters of text, backed off to a word boundary when one is near."""
    if chars >= len(text):
        return text
    head = text[:max(0, chars)]
    space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
    if text[chars:chars + 1].isspace():
        space = chars  # the cut already falls between words
    if space >= 0 and chars - space <= max(_WORD_CUT_WINDOW, chars // 5):
        head = head[:space]
    return head.rstrip()


def fit_sources(examples: list[Example], prompts: list[list[int]], budget: int,
                config: TrainConfig, codec, source_lang: str | None = None) -> list[list[int]]:
    """Token ids of each prompt re-rendered with its source text shortened until the whole
    prompt has at most `budget` tokens.

    The template's own cost is measured by rendering it around an empty source; the source
    then keeps a share of its characters proportional to the tokens left for it, and the
    estimate shrinks until the re-tokenized prompt fits (tokens merge across the cut, so one
    pass is not always exact). Only the examples still too long are re-tokenized each round.
    Raises ConfigError when even the empty-source prompt exceeds the budget.
    """
    empty = codec.encode_batch([render(replace(e, source=""), config, source_lang)[0]
                                for e in examples])
    for e, ids in zip(examples, empty):
        if len(ids) > budget:
            raise ConfigError(
                f"max_source_tokens {config.max_source_tokens} cannot hold the prompt template "
                f"itself ({len(ids)} tokens without any source text, plus BOS); raise "
                f"max_source_tokens (the template must stay whole: its cue tells the model "
                f"what to write)")
    fitted = list(prompts)
    chars = [len(e.source) for e in examples]
    todo = list(range(len(examples)))
    while todo:
        texts = []
        for i in todo:
            source_tokens = max(1, len(fitted[i]) - len(empty[i]))
            room = budget - len(empty[i])
            # Strictly fewer characters each round, so the loop ends (at worst at "").
            chars[i] = min(chars[i] - 1, int(chars[i] * room / source_tokens))
            short = replace(examples[i], source=cut_text(examples[i].source, max(0, chars[i])))
            texts.append(render(short, config, source_lang)[0])
        for i, ids in zip(todo, codec.encode_batch(texts)):
            fitted[i] = ids
        todo = [i for i in todo if len(fitted[i]) > budget]
    return fitted


# ---- batches ---------------------------------------------------------------------------------
class BatchStream:
    """The training example order: epoch after epoch, each a seeded permutation of the subset;
    step s takes the next `batch_size` examples (batches may straddle an epoch boundary, so
    every step is full and the step count does not depend on D_f). `indices(step)` is a pure
    function of (seed, step), which is what makes resuming after preemption exact."""

    def __init__(self, size: int, batch_size: int, seed: int):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            order = list(range(self.size))
            random.Random(f"ftscale-order-{self.seed}-{epoch}").shuffle(order)
            self._perms = {epoch: order}  # only the current epoch is ever needed again
        return self._perms[epoch]

    def indices(self, step: int) -> list[int]:
        start = step * self.batch_size
        out = []
        for pos in range(start, start + self.batch_size):
            epoch, offset = divmod(pos, self.size)
            out.append(self._perm(epoch)[offset])
        return out


def collate(batch: list[Encoded], pad_id: int):
    """Right-padded tensors for a causal LM with loss on the target only.

    Returns (input_ids [B, T], target_mask [B, T] bool, labels [N]) where the input is
    source+target minus its last token, target_mask marks the positions whose next token is a
    target token, and labels are those next tokens in row-major order.
    """
    import torch

    width = max(e.length for e in batch) - 1
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    target_mask = torch.zeros((len(batch), width), dtype=torch.bool)
    labels = []
    for row, e in enumerate(batch):
        seq = e.source_ids + e.target_ids
        input_ids[row, : len(seq) - 1] = torch.tensor(seq[:-1])
        first = len(e.source_ids) - 1
        target_mask[row, first: first + len(e.target_ids)] = True
        labels.extend(e.target_ids)
    return input_ids, target_mask, torch.tensor(labels, dtype=torch.long)


def eval_batches(encoded: list[Encoded], max_tokens: int = 8192):
    """Evaluation batches: examples sorted by length, packed up to ~max_tokens each (less
    padding, bigger matrices). Yields lists of Encoded."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].length)
    batch: list[Encoded] = []
    for i in order:
        e = encoded[i]
        if batch and (len(batch) + 1) * e.length > max_tokens:
            yield batch
            batch = []
        batch.append(e)
    if batch:
        yield batch
