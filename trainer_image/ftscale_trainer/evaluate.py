"""Evaluation: per-token NLL on the target (nats) and greedy-decoding metrics.

The loss is exactly the training objective's: the summed negative log-likelihood of the target
tokens (including EOS) divided by their count, over the whole set — a token-level average, so
long examples weigh more, as token-level perplexity does (paper §3.6). Perplexity = exp(loss).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ftscale_trainer.data import Encoded, collate, eval_batches


@torch.no_grad()
def target_nll(model, encoded: list[Encoded], pad_id: int, runtime) -> float:
    """Mean target-token NLL (nats) of `model` on `encoded`; data-parallel ranks split the set
    and sum their totals. Returns NaN for an empty set."""
    model.eval()
    shard = encoded[runtime.rank::runtime.world_size]
    total = torch.zeros(2, dtype=torch.float64, device=runtime.device)
    for batch in eval_batches(shard):
        input_ids, target_mask, labels = collate(batch, pad_id)
        with runtime.autocast():
            logits = model(input_ids.to(runtime.device), target_mask.to(runtime.device))
        nll = F.cross_entropy(logits.float(), labels.to(runtime.device), reduction="sum")
        total[0] += nll.double()
        total[1] += labels.numel()
    total = runtime.sum_across(total)
    model.train()
    return float(total[0] / total[1]) if total[1] > 0 else math.nan


@torch.no_grad()
def greedy_decode(model, encoded: list[Encoded], codec, runtime, max_new_tokens: int,
                  batch_size: int = 64) -> list[str]:
    """Greedy continuations of each example's source (left-padded batches, no KV cache: the
    tiny models make recomputation cheaper than cache bookkeeping). Returns decoded strings."""
    model.eval()
    out: list[str] = []
    for start in range(0, len(encoded), batch_size):
        chunk = encoded[start:start + batch_size]
        width = max(len(e.source_ids) for e in chunk)
        ids = torch.full((len(chunk), width), codec.pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, e in enumerate(chunk):
            ids[row, width - len(e.source_ids):] = torch.tensor(e.source_ids)
            mask[row, width - len(e.source_ids):] = 1
        ids, mask = ids.to(runtime.device), mask.to(runtime.device)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=runtime.device)
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
        tokens = torch.stack(generated, dim=1).tolist() if generated else [[] for _ in chunk]
        for row in tokens:
            if codec.eos_id in row:
                row = row[: row.index(codec.eos_id)]
            out.append(codec.decode([t for t in row if t != codec.pad_id]).strip())
    model.train()
    return out


def generation_scores(hypotheses: list[str], references: list[str], metrics: list[str]) -> dict[str, float]:
    """{"bleu": sacreBLEU corpus BLEU (0–100), "rougeL": mean ROUGE-L F1 (0–1)} as requested."""
    scores: dict[str, float] = {}
    if "bleu" in metrics:
        import sacrebleu

        scores["bleu"] = round(sacrebleu.corpus_bleu(hypotheses, [references]).score, 4)
    if "rougeL" in metrics:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(["rougeL"])
        values = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hypotheses, references)]
        scores["rougeL"] = round(sum(values) / max(1, len(values)), 6)
    return scores
