"""The run-result contract: one JSON object per finetuning run (docs/run-contract.md).

The trainer writes it, `ftscale run` stores it as a file, the operator reads it from a pod's
termination message, and the fit reads a table of them. This module is the one source of truth
for its fields; nothing else spells them out.

Two forms of the same object:
- compact: no loss curves and no config; always under COMPACT_LIMIT bytes so it survives the
  kubelet's 4096-byte cut of termination messages;
- full: everything, written to the results volume / run folder.
The fitted quantity is `test_loss`: per-token negative log-likelihood in nats on the test set,
at the checkpoint with the best dev loss (paper §2.1 item 7, §3.6).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ftscale.api.outcomes import (  # noqa: F401 - re-exported: results.FAILED etc.
    BACKOFF_LIMIT_EXCEEDED, COMPACT_LIMIT, DEADLINE_EXCEEDED, FAILED, GPU_OUT_OF_MEMORY,
    INTERRUPTED, INVALID_CONFIG, NON_FINITE_LOSS, OOM_KILLED, OUTCOMES, RUNTIME_ERROR, SUCCEEDED)

SCHEMA = "ftscale.io/run-result/v1"


class ResultError(ValueError):
    """A result document that is missing, corrupt or not of this contract."""


def identity_problem(result: "RunResult", key) -> str | None:
    """Why `result` is not the result of the run `key` (a ftscale.identity.RunKey), or None.
    Both executors accept a result only when every identity field is the run's own."""
    got = (result.run_id, result.model, result.method, result.pet_size, result.data_size,
           result.seed)
    want = (key.run_id, key.model, key.method, key.pet_size, key.data_size, key.seed)
    if got != want:
        return f"it belongs to another run: {got} instead of {want}"
    return None


@dataclass(frozen=True)
class RunResult:
    """One run's result. Frozen: a changed result is a new one (dataclasses.replace)."""

    # --- identity (ftscale.identity.RunKey) ---
    study: str
    run_id: str
    model: str
    method: str  # fmt | lora | prompt
    pet_size: int | None  # LoRA rank or prompt length; None for fmt
    data_size: int  # D_f, finetuning examples actually used
    seed: int
    # --- X values of the scaling factors ---
    model_params: int | None = None  # model size X_m: non-embedding parameters of the base model
    pretrain_tokens: int | None = None  # X_p: tokens the base checkpoint was pretrained on
    # --- outcome ---
    outcome: str = SUCCEEDED
    reason: str | None = None  # one of the failure reasons above when outcome is Failed
    message: str | None = None  # human-readable detail of a failure
    # --- metrics (nats per target token) ---
    best_dev_loss: float | None = None
    best_step: int | None = None
    test_loss: float | None = None
    test_ppl: float | None = None
    generation: dict[str, float] = field(default_factory=dict)  # e.g. {"bleu": 3.1, "rougeL": 0.2}
    zero_shot: dict[str, dict[str, float]] = field(default_factory=dict)  # {"fr-de": {"loss": ..}}
    # --- accounting ---
    trainable_params: int | None = None  # as peft counts them
    total_params: int | None = None
    tokens_seen: int | None = None  # target+source tokens fed forward in training
    steps: int | None = None
    wall_seconds: float | None = None
    # GPU-seconds the run held: wall seconds × GPUs (0 on CPU). The trainer may fill it; the
    # executors fill it from the run's GPU count otherwise (ftscale.budget.gpu_seconds).
    gpu_seconds: float | None = None
    device: str | None = None  # e.g. "cpu", "cuda:NVIDIA H100 80GB HBM3 x8"
    # --- full form only ---
    curves: dict[str, list[list[float]]] = field(default_factory=dict)  # {"train": [[step, loss]]}
    config: dict[str, Any] = field(default_factory=dict)  # the trainer config that ran
    schema: str = SCHEMA

    @property
    def ok(self) -> bool:
        return self.outcome == SUCCEEDED

    # ---- serialisation -------------------------------------------------------------------
    def to_full_json(self) -> str:
        return json.dumps(_clean(asdict(self)), sort_keys=True, allow_nan=False)

    def to_compact_json(self) -> str:
        """Compact form for termination messages: no curves, no config, under COMPACT_LIMIT."""
        doc = _clean(asdict(self))
        doc.pop("curves", None)
        doc.pop("config", None)
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        if len(text.encode()) > COMPACT_LIMIT and doc.get("message"):
            # The failure message is the only free-length field: shorten it, keep the rest.
            over = len(text.encode()) - COMPACT_LIMIT
            doc["message"] = doc["message"][: max(0, len(doc["message"]) - over - 20)] + " …"
            text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
        if len(text.encode()) > COMPACT_LIMIT:
            for big in ("zero_shot", "generation"):
                doc[big] = {}
                text = json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)
                if len(text.encode()) <= COMPACT_LIMIT:
                    break
        return text

    def row(self) -> dict[str, Any]:
        """A flat table row (for `ftscale fit`): identity, X values, outcome and metrics."""
        doc = asdict(self)
        doc.pop("curves")
        doc.pop("config")
        for name, value in doc.pop("generation").items():
            doc[name] = value
        return doc


def _clean(doc: dict[str, Any]) -> dict[str, Any]:
    """Non-finite floats cannot be JSON: a failed run reports None instead of NaN."""
    out = {}
    for key, value in doc.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, dict):
            value = _clean(value)
        out[key] = value
    return out


_FIELDS = {f.name: f for f in fields(RunResult)}
_REQUIRED = ("study", "run_id", "model", "method", "data_size", "seed")
_INT_FIELDS = ("data_size", "seed", "pet_size", "model_params", "pretrain_tokens", "best_step",
               "trainable_params", "total_params", "tokens_seen", "steps")
_FLOAT_FIELDS = ("best_dev_loss", "test_loss", "test_ppl", "wall_seconds", "gpu_seconds")


def parse_result(text: str | bytes) -> RunResult:
    """Parse and check a result document (either form). Raises ResultError with the reason."""
    try:
        doc = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ResultError(f"not JSON: {exc}") from None
    return result_from_dict(doc)


def result_from_dict(doc: Any) -> RunResult:
    if not isinstance(doc, dict):
        raise ResultError("a run result must be a JSON object")
    if doc.get("schema") != SCHEMA:
        raise ResultError(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    missing = [name for name in _REQUIRED if doc.get(name) is None]
    if missing:
        raise ResultError(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(doc) - set(_FIELDS))
    if unknown:
        raise ResultError(f"unknown field(s): {', '.join(unknown)}")
    for name in _INT_FIELDS:
        value = doc.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ResultError(f"{name} must be an integer, got {value!r}")
    for name in _FLOAT_FIELDS:
        value = doc.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ResultError(f"{name} must be a number, got {value!r}")
        # JSON has no NaN/Infinity (Python's parser accepts them): a status write carrying one
        # would be refused by the API server, so the contract refuses them first.
        if value is not None and not math.isfinite(value):
            raise ResultError(f"{name} must be finite, got {value!r}")
    if doc.get("outcome", SUCCEEDED) not in OUTCOMES:
        raise ResultError(f"outcome must be one of {OUTCOMES}, got {doc.get('outcome')!r}")
    if doc.get("outcome", SUCCEEDED) == SUCCEEDED and doc.get("test_loss") is None:
        raise ResultError("a Succeeded result must carry test_loss")
    return RunResult(**doc)
