"""Where the offline tiny world lives and how names in study manifests map to it (torch-free).

A study manifest names toy models and tasks without machine-specific paths:

    model source  `toy:<name>`           the final checkpoint of family member <name>
                  `toy:<name>@<tokens>`  its intermediate checkpoint after <tokens> pretraining tokens
    task          `toy-en-de`            English→German, train/dev/test   (also toy-en-fr, toy-fr-de)
                  `toy-sum`              long → short package descriptions in en/de/fr

All of it sits under `$FTSCALE_CACHE/toy/<WORLD_VERSION>/` (default ~/.cache/ftscale/toy/...),
built by `ftscale toy build` (ftscale_trainer.toy). `family()` lists the models with their
non-embedding parameters and pretraining tokens per checkpoint so the study side can fill in the
X values of the scaling law without importing torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

# Bump when the data recipe, tokenizer or family changes: a new folder, never a silent rewrite.
WORLD_VERSION = "v1"
TOY_PREFIX = "toy:"

# Built-in tasks: split files under data/, and the language names the prompt template uses.
TASKS = {
    "toy-en-de": dict(folder="en-de", template="translate", source_lang="English", target_lang="German"),
    "toy-en-fr": dict(folder="en-fr", template="translate", source_lang="English", target_lang="French"),
    "toy-fr-de": dict(folder="fr-de", template="translate", source_lang="French", target_lang="German"),
    "toy-sum": dict(folder="sum", template="summarize", source_lang=None, target_lang=None),
}


class WorldError(LookupError):
    """A toy name that does not resolve: not built yet, or no such model/checkpoint/task."""


def cache_root() -> str:
    return os.environ.get("FTSCALE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "ftscale")


def world_dir(version: str = WORLD_VERSION) -> str:
    return os.path.join(cache_root(), "toy", version)


@dataclass(frozen=True)
class Checkpoint:
    tokens: int  # pretraining tokens seen at this checkpoint (X_p)
    path: str  # absolute folder (HF format: config.json, model.safetensors, tokenizer.json)
    dev_loss: float | None  # pretraining dev loss (nats/token) at this checkpoint


@dataclass(frozen=True)
class ToyModel:
    name: str
    non_embedding_params: int  # X_m as the paper counts model size
    total_params: int
    hidden_size: int
    layers: int
    checkpoints: tuple[Checkpoint, ...]  # ascending tokens; the last one is the final model
    # finetuning learning rate per method ("fmt", "lora", "prompt"), chosen by the world
    # build's dev sweep (toy.sweep_learning_rates); empty for a world built without one
    learning_rates: dict[str, float] = field(default_factory=dict)

    @property
    def final(self) -> Checkpoint:
        return self.checkpoints[-1]


def family(root: str | None = None) -> list[ToyModel]:
    """The built family, smallest first. Raises WorldError when the world is not built."""
    root = root or world_dir()
    path = os.path.join(root, "family.json")
    if not os.path.exists(path):
        raise WorldError(f"the toy world is not built ({path} missing): run `ftscale toy build`")
    with open(path, encoding="utf-8") as handle:
        doc = json.load(handle)
    models = []
    for m in doc["models"]:
        checkpoints = tuple(
            Checkpoint(tokens=c["tokens"], path=os.path.join(root, c["path"]), dev_loss=c.get("dev_loss"))
            for c in m["checkpoints"]
        )
        rates = {method: float(entry["learning_rate"])
                 for method, entry in m.get("finetune", {}).items()}
        models.append(ToyModel(name=m["name"], non_embedding_params=m["non_embedding_params"],
                               total_params=m["total_params"], hidden_size=m["hidden_size"],
                               layers=m["layers"], checkpoints=checkpoints,
                               learning_rates=rates))
    return models


def is_toy_source(source: str) -> bool:
    return source.startswith(TOY_PREFIX)


@dataclass(frozen=True)
class ResolvedModel:
    path: str
    model_params: int | None
    pretrain_tokens: int | None
    learning_rates: dict[str, float] = field(default_factory=dict)  # per method, from the sweep


def resolve_model(source: str, root: str | None = None) -> ResolvedModel:
    """Map `toy:<name>[@<tokens>]` to its checkpoint folder and X values.

    Raises WorldError (with the names that do exist) when it does not resolve.
    """
    if not is_toy_source(source):
        raise WorldError(f"{source!r} is not a toy model source (toy:<name>[@<tokens>])")
    spec = source[len(TOY_PREFIX):]
    name, _, tokens = spec.partition("@")
    models = {m.name: m for m in family(root)}
    if name not in models:
        raise WorldError(f"no toy model {name!r}; the family has {', '.join(models)}")
    model = models[name]
    if not tokens:
        ckpt = model.final
    else:
        try:
            want = int(tokens)
        except ValueError:
            raise WorldError(f"{source!r}: the part after @ must be a token count") from None
        matches = [c for c in model.checkpoints if c.tokens == want]
        if not matches:
            raise WorldError(f"{name} has no checkpoint at {want} tokens; it has "
                             f"{', '.join(str(c.tokens) for c in model.checkpoints)}")
        ckpt = matches[0]
    # An intermediate checkpoint takes its model's rates: the sweep ran on the final one.
    return ResolvedModel(path=ckpt.path, model_params=model.non_embedding_params,
                         pretrain_tokens=ckpt.tokens, learning_rates=dict(model.learning_rates))


def task_files(task: str, root: str | None = None) -> dict[str, str]:
    """{'train': path, 'dev': path, 'test': path} of a built-in task's JSONL splits."""
    if task not in TASKS:
        raise WorldError(f"no built-in task {task!r}; built-in tasks: {', '.join(TASKS)}")
    folder = os.path.join(root or world_dir(), "data", TASKS[task]["folder"])
    files = {split: os.path.join(folder, f"{split}.jsonl") for split in ("train", "dev", "test")}
    if not os.path.exists(files["test"]):
        raise WorldError(f"task {task} is not built ({folder} missing): run `ftscale toy build`")
    return files


def model_sources(root: str | None = None) -> list[str]:
    """Every `toy:` source the built world offers (final and intermediate checkpoints)."""
    out = []
    for m in family(root):
        out.append(f"{TOY_PREFIX}{m.name}")
        out += [f"{TOY_PREFIX}{m.name}@{c.tokens}" for c in m.checkpoints[:-1]]
    return out
