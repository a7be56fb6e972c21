"""Evaluation: per-token NLL on the target (nats) and greedy-decoding metrics (BLEU, ROUGE-L),
each metric with its sample size and a bootstrap interval.

The loss is exactly the training objective's: the summed negative log-likelihood of the target
tokens (including EOS) divided by their count, over the whole set — a token-level average, so
long examples weigh more, as token-level perplexity does (paper §3.6). Perplexity = exp(loss).
"""

from __future__ import annotations

import importlib.util
import math
import re
import unicodedata

import numpy as np
import torch
import torch.nn.functional as F

from ftscale_trainer.config import BLEU_TOKENIZERS, ConfigError
from ftscale_trainer.data import Encoded, collate, eval_batches


@torch.no_grad()
def target_nll(model, encoded: list[Encoded], pad_id: int, runtime) -> float:
    """Mean target-token NLL (nats) of `model` on `encoded`; data-parallel ranks split the set
    and sum their totals. Returns NaN for an empty set."""
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    for batch, counted in _rank_batches(encoded, runtime):
        input_ids, target_mask, labels = collate(batch, pad_id)
        with runtime.autocast():
            logits = model(input_ids.to(runtime.device), target_mask.to(runtime.device))
        if not counted:
            continue
        nll = F.cross_entropy(logits.float(), labels.to(runtime.device), reduction="sum")
        total[0] += nll.double()
        total[1] += labels.numel()
    total = runtime.sum_across(total)
    model.train()
    return float(total[0] / total[1]) if total[1] > 0 else math.nan


def _rank_batches(encoded: list[Encoded], runtime):
    """(batch, counted) pairs this rank evaluates. Data parallel: its share of the examples.
    Sharded (FSDP): every forward pass gathers weights from every rank, so all ranks must run
    the same number of passes; they take whole batches in turn, and a rank left without one in
    the last round runs the first batch again without counting it."""
    if not getattr(runtime, "sharded", False):
        return [(b, True) for b in eval_batches(encoded[runtime.rank::runtime.world_size])]
    batches = list(eval_batches(encoded))
    world = runtime.world_size
    rounds = -(-len(batches) // world)
    return [(batches[i], True) if i < len(batches) else (batches[0], False)
            for i in range(runtime.rank, rounds * world, world)]


@torch.no_grad()
def greedy_decode(model, encoded: list[Encoded], codec, runtime, max_new_tokens: int,
                  batch_size: int = 64) -> list[str]:
    """Greedy continuations of each example's source, decoded to strings (cut at EOS).

    The hf backend (a model with a transformers `generate`) decodes with the KV cache, which
    real checkpoints need (500 examples × 128 tokens); the native toy models recompute the
    whole prefix each step, cheaper than cache bookkeeping at their size. Both batch
    left-padded sources. Every data-parallel rank decodes the same examples in the same
    batches: sharded (FSDP) weights need all ranks in every forward pass.
    """
    model.eval()
    inner = getattr(model, "inner", None)
    decode = _generate_hf if inner is not None and hasattr(inner, "generate") else _greedy_loop
    out: list[str] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        ids, mask = left_pad([e.source_ids for e in chunk], codec.pad_id)
        ids, mask = ids.to(runtime.device), mask.to(runtime.device)
        tokens = decode(inner if decode is _generate_hf else model, ids, mask, codec, runtime,
                        max_new_tokens)
        out += [codec.decode(strip_special(row, codec.eos_id, codec.pad_id)).strip() for row in tokens]
    model.train()
    return out


def left_pad(rows, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids [B, T], attention mask [B, T]) with each row right-aligned: the next token of every
    row is then predicted at the same, last, position."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


def strip_special(row: list[int], eos_id: int, pad_id: int) -> list[int]:
    """Generated ids up to the first EOS, without padding."""
    if eos_id in row:
        row = row[: row.index(eos_id)]
    return [t for t in row if t != pad_id]


def _greedy_loop(model, ids, mask, codec, runtime, max_new_tokens: int) -> list[list[int]]:
    """Generated ids per row, by re-running the model on the whole prefix each step."""
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    generated = []
    for _ in range(max_new_tokens):
        last = torch.zeros_like(ids, dtype=torch.bool)
        last[:, -1] = True
        with runtime.autocast():
            logits = model(ids, last, attention_mask=mask)
        nxt = logits.argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, codec.pad_id), nxt)
        generated.append(nxt)
        done |= nxt == codec.eos_id
        ids = torch.cat([ids, nxt[:, None]], dim=1)
        mask = torch.cat([mask, (~done | (nxt == codec.eos_id)).long()[:, None]], dim=1)
        if bool(done.all()):
            break
    if not generated:
        return [[] for _ in range(ids.shape[0])]
    return torch.stack(generated, dim=1).tolist()


def _generate_hf(inner, ids, mask, codec, runtime, max_new_tokens: int) -> list[list[int]]:
    """Generated ids per row from transformers' `generate` (greedy, KV cache)."""
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              pad_token_id=codec.pad_id, eos_token_id=codec.eos_id)
    # Under several processes, keep every rank stepping until all are done (sharded weights).
    synced = runtime.world_size > 1 and torch.distributed.is_available() \
        and torch.distributed.is_initialized()
    peft_config = getattr(inner, "active_peft_config", None)
    with runtime.autocast():
        if getattr(peft_config, "is_prompt_learning", False):
            return _generate_prompt_tuned(inner, ids, mask, config, synced)
        out = inner.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                             synced_gpus=synced)
    return out[:, ids.shape[1]:].tolist()


def _generate_prompt_tuned(peft_model, ids, mask, config, synced: bool) -> list[list[int]]:
    """Greedy ids of a peft prompt-tuning model, by the base model's `generate` on
    [virtual tokens, left padding, source]. peft's own generate drops position ids, so a
    left-padded row would see its source at positions shifted by its padding (measured: other
    text than the same row alone); from the attention mask, transformers numbers the virtual
    tokens 0..P-1 and the source from P on, as in training."""
    base = peft_model.get_base_model()
    prompts = peft_model.get_prompt(batch_size=ids.shape[0])
    embeds = base.get_input_embeddings()(ids)
    embeds = torch.cat([prompts.to(embeds.dtype), embeds], dim=1)
    mask = torch.cat([mask.new_ones(ids.shape[0], prompts.shape[1]), mask], dim=1)
    # Given embeddings only, generate returns only the new tokens.
    return base.generate(inputs_embeds=embeds, attention_mask=mask, generation_config=config,
                         synced_gpus=synced).tolist()


# ---- scores --------------------------------------------------------------------------------
# Resamples for the 95% percentile intervals; the seed is sacrebleu's default, so a result
# document is reproducible.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 12345

# Kana and CJK ideographs carry a word's worth of meaning per character and are written without
# spaces: ROUGE counts them one character at a time (the usual choice for Chinese ROUGE).
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


class UnicodeWordTokenizer:
    """ROUGE tokenizer for any script: casefolded runs of Unicode letters and digits (the
    rouge_score Tokenizer interface: `tokenize(text) -> list[str]`).

    rouge_score's default tokenizer keeps only [a-z0-9], so "Übersetzungsprogramm für Käse"
    becomes "bersetzungsprogramm", "f", "r", "k", "se": German and French ROUGE would count
    fragments. On ASCII text this gives the default's tokens (tested). No stemming (the default
    stemmer is Porter's, English only).
    """

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def rouge_l_f1(hypothesis: list[str], reference: list[str]) -> float:
    """ROUGE-L F1 of two token lists: the longest common subsequence's precision and recall,
    combined as rouge_score's RougeScorer(["rougeL"]) does (tested equal). Written out because
    importing rouge_score pulls in nltk, seconds of CPU per run."""
    if not hypothesis or not reference:
        return 0.0
    previous = [0] * (len(reference) + 1)
    for token in hypothesis:
        current = [0]
        for j, ref_token in enumerate(reference):
            current.append(previous[j] + 1 if token == ref_token else max(previous[j + 1], current[j]))
        previous = current
    lcs = previous[-1]
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hypothesis), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def preflight(config) -> None:
    """Fail before training, not after it, when a requested generation metric cannot be
    computed here. Raises ConfigError."""
    if "bleu" not in config.generation:
        return
    name = config.bleu_tokenizer
    if name not in BLEU_TOKENIZERS:
        raise ConfigError(f"bleu_tokenizer must be one of {', '.join(BLEU_TOKENIZERS)}; got {name!r}")
    # The flores tokenizers also need sacrebleu's SentencePiece model, which it downloads into
    # $SACREBLEU/models on first use: an offline pod needs it placed there beforehand.
    if name.startswith("flores") and importlib.util.find_spec("sentencepiece") is None:
        raise ConfigError(f"bleu_tokenizer {name} needs the sentencepiece package, which this "
                          f"image lacks; use 13a, intl or zh, or install sentencepiece")


def generation_scores(hypotheses: list[str], references: list[str], metrics: list[str],
                      bleu_tokenizer: str = "13a") -> dict[str, float]:
    """Scores of greedy outputs against references, each with its sample size and a 95%
    bootstrap interval (resampling the examples):

    * "bleu": sacreBLEU corpus BLEU (0–100) with `bleu_tokenizer`; "bleu_n", "bleu_ci_low",
      "bleu_ci_high";
    * "rougeL": mean ROUGE-L F1 (0–1) over examples, tokens from UnicodeWordTokenizer; "rougeL_n", "rougeL_ci_low",
      "rougeL_ci_high".

    The interval says how much the score would move on another test sample of the same size;
    a table of scores whose intervals overlap is noise (ftscale.local.report leaves it out).
    """
    n = len(hypotheses)
    if not n:
        return {f"{metric}_n": 0 for metric in metrics}  # nothing decoded: no score, not a zero
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    scores: dict[str, float] = {}
    if "bleu" in metrics:
        import sacrebleu

        bleu = sacrebleu.BLEU(tokenize=bleu_tokenizer)
        scores["bleu"] = round(bleu.corpus_score(hypotheses, [references]).score, 4)
        # Corpus BLEU is a function of summed per-sentence n-gram statistics, so a resample is a
        # sum of rows (what sacrebleu's own --confidence does; percentiles here).
        stats = np.asarray(bleu._extract_corpus_statistics(hypotheses, [references]), dtype=np.float64)
        replicates = [bleu._compute_score_from_stats(list(s)).score for s in stats[picks].sum(axis=1)]
        scores.update(_interval("bleu", n, replicates, 4))
    if "rougeL" in metrics:
        tokenize = UnicodeWordTokenizer().tokenize
        values = np.array([rouge_l_f1(tokenize(h), tokenize(r)) for h, r in zip(hypotheses, references)])
        scores["rougeL"] = round(float(values.mean()), 6)
        scores.update(_interval("rougeL", n, values[picks].mean(axis=1), 6))
    return scores


def _interval(name: str, n: int, replicates, digits: int) -> dict[str, float]:
    low, high = np.percentile(np.asarray(replicates, dtype=np.float64), [2.5, 97.5])
    return {f"{name}_n": n, f"{name}_ci_low": round(float(low), digits),
            f"{name}_ci_high": round(float(high), digits)}
