"""The status entry of one terminal run: its schema (the CRD's `status.recentFailures[]` items
are generated from ENTRY_FIELDS) and its conversion to and from ftscale.results.RunResult.

An entry carries what `kubectl describe` needs — identity, X values, outcome, loss, reason —
and nothing else. Every run's whole compact result is in the study's results ConfigMaps
(ftscale.api.results_store); the status lists only the newest RECENT_FAILURES failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ftscale.api.outcomes import FAILED, OUTCOMES
from ftscale.results import RunResult

# Failure messages in entries are cut to this many characters (the status stays small; the
# full message is in the results ConfigMap and the Event).
MESSAGE_LIMIT = 200
# status.recentFailures holds this many of the newest failures.
RECENT_FAILURES = 5


@dataclass(frozen=True)
class EntryField:
    name: str  # camelCase key in the status entry
    attr: str  # RunResult attribute
    type: str  # OpenAPI type: string | integer | number
    description: str
    required: bool = False


ENTRY_FIELDS: tuple[EntryField, ...] = (
    EntryField("runId", "run_id", "string",
               "Stable run id (hash of model, method, PET size, data size, seed).", True),
    EntryField("model", "model", "string", "Model name (spec.models[].name).", True),
    EntryField("method", "method", "string", "Finetuning method: fmt, lora or prompt.", True),
    EntryField("petSize", "pet_size", "integer", "LoRA rank or prompt length; absent for fmt."),
    EntryField("dataSize", "data_size", "integer", "Finetuning examples D_f.", True),
    EntryField("seed", "seed", "integer", "Seed.", True),
    EntryField("phase", "outcome", "string", "Succeeded or Failed.", True),
    EntryField("testLoss", "test_loss", "number",
               "Test loss, nats per target token, at the best-dev checkpoint (the fitted "
               "quantity)."),
    EntryField("modelParams", "model_params", "integer",
               "X_m: non-embedding parameters of the base model the run used."),
    EntryField("pretrainTokens", "pretrain_tokens", "integer",
               "X_p: pretraining tokens of the base checkpoint the run used."),
    EntryField("reason", "reason", "string",
               "Failure reason (InvalidConfig, NonFiniteLoss, OOMKilled, DeadlineExceeded, ...)."),
    EntryField("message", "message", "string",
               f"Failure detail, cut to {MESSAGE_LIMIT} characters."),
    EntryField("gpuSeconds", "gpu_seconds", "number",
               "GPU-seconds the run held (wall seconds × GPUs; 0 on CPU): what the budget "
               "counts as spent."),
)
PHASE_ENUM = list(OUTCOMES)


def entry_from_result(result: RunResult) -> dict[str, Any]:
    """A RunResult → its status entry; fields that are None are left out."""
    entry = {}
    for f in ENTRY_FIELDS:
        value = getattr(result, f.attr)
        if f.name == "message" and value and len(value) > MESSAGE_LIMIT:
            value = value[: MESSAGE_LIMIT - 1] + "…"
        if value is not None:
            entry[f.name] = value
    return entry


def result_from_entry(study: str, entry: Mapping[str, Any]) -> RunResult:
    """A status entry → a compact RunResult (what the fit input is built from). Every field an
    entry can hold is read; nothing else is invented."""
    values = {f.attr: entry.get(f.name) for f in ENTRY_FIELDS}
    values["outcome"] = values["outcome"] or FAILED
    return RunResult(study=study, **values)
