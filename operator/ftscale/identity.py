"""Run identity: the one source of truth for what makes two runs "the same run".

A run is (model, method, PET size, data size, seed) — docs/study.md, "The grid". Its id is a
short, stable hash of exactly those values, so that ids do not move when unrelated spec fields
(images, resources, learning rates, ...) change, and so that the operator can rebuild all state
from Job names after a restart. Job names are `<study>-<id>` and must stay within 63 characters.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from ftscale.api.meta import MAX_JOB_NAME, MAX_STUDY_NAME, RUN_ID_LENGTH  # noqa: F401

_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case: DNS-safe


@dataclass(frozen=True, order=True)
class RunKey:
    """The identity of one finetuning run; everything else about a run is configuration."""

    model: str  # the model's name in the study spec (spec.models[].name)
    method: str  # "fmt", "lora" or "prompt"
    pet_size: int | None  # LoRA rank or prompt length; None for full-model tuning
    data_size: int  # finetuning examples, D_f
    seed: int

    def canonical(self) -> str:
        """The bytes that are hashed: sorted-key JSON, so field order never matters."""
        return json.dumps(
            {
                "model": self.model,
                "method": self.method,
                "petSize": self.pet_size,
                "dataSize": self.data_size,
                "seed": self.seed,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @property
    def run_id(self) -> str:
        return run_id(self)


def run_id(key: RunKey) -> str:
    """Short stable id of a run: base32 of the SHA-256 of its canonical form."""
    digest = hashlib.sha256(key.canonical().encode()).digest()
    value = int.from_bytes(digest[:8], "big")
    chars = []
    for _ in range(RUN_ID_LENGTH):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(chars)


def job_name(study: str, key: RunKey) -> str:
    """The run's Job name, `<study>-<id>`; the CRD caps study names so this fits in 63."""
    if len(study) > MAX_STUDY_NAME:
        raise ValueError(
            f"study name {study!r} is {len(study)} characters; at most {MAX_STUDY_NAME} "
            f"leave room for the run id in Job names"
        )
    return f"{study}-{run_id(key)}"
