"""The trainer's configuration: one JSON object = one `TrainConfig` (torch-free module).

The local executor and the operator write these configs from a ScalingStudy spec; the trainer
reads one per run (`python -m ftscale_trainer --config run.json`). `TrainConfig.from_dict`
rejects unknown keys and bad values with a message that says what to change (→ exit code 2),
and `defaults_for(method, model_params)` gives the per-method optimisation defaults so the spec
side can show and override them without importing torch.

Per-method defaults follow the paper's Appendix (Zhang et al. 2024, §3.5 of paper.md):
Prompt 3e-1 / batch 16, LoRA 1e-2 / batch 16, FMT 1e-3 / batch 128 on 1B-parameter models with
Adafactor. Tiny models (< 10M non-embedding parameters, the offline toy family) get values
measured on that family with AdamW instead; see `_TINY` below for the measurements behind them.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

METHODS = ("fmt", "lora", "prompt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "native", "hf")
TEMPLATES = ("translate", "summarize", "plain")
GENERATION_METRICS = ("bleu", "rougeL")
# BLEU tokenizers as sacrebleu names them (flores* need sentencepiece; ftscale_trainer.evaluate).
BLEU_TOKENIZERS = ("13a", "intl", "zh", "char", "none", "flores101", "flores200")
DATA_FORMATS = ("auto", "jsonl", "hf_disk")
SAVE_KINDS = ("none", "adapter", "model")
GRADIENT_CHECKPOINTING = ("auto", "true", "false")
SHARDINGS = ("auto", "none", "fsdp")  # ftscale_trainer.runtime.choose_sharding

# LoRA targets, resolved per architecture by ftscale_trainer.peft_targets. The default puts
# adapters on every linear layer of the decoder blocks — attention and feed-forward, as the
# paper does (§3.3) — which is peft's own "all-linear" rule (q,k,v,o,gate,up,down on Llama;
# query_key_value, dense, dense_h_to_4h, dense_4h_to_h on GPT-NeoX). "peft-default" asks for
# peft's per-architecture mapping instead (attention only, e.g. q_proj+v_proj on Llama).
ALL_LINEAR = "all-linear"
PEFT_DEFAULT = "peft-default"
DEFAULT_LORA_TARGETS = (ALL_LINEAR,)

# Below this many non-embedding parameters a model counts as "tiny" (the toy family, tests).
TINY_MODEL_PARAMS = 10_000_000


class ConfigError(ValueError):
    """The config cannot run as written; retrying cannot help (trainer exit code 2)."""


@dataclass
class ZeroShotSet:
    """An extra evaluation set reported separately (e.g. French→German for an En→De model)."""

    name: str  # key in the result's zero_shot map, e.g. "fr-de"
    source_lang: str | None = None  # language named in the prompt template, e.g. "French"
    task: str | None = None  # built-in split, e.g. "toy-fr-de" (its test split is used)
    path: str | None = None  # or a JSONL file / HF dataset folder with source/target fields
    examples: int = 256  # evaluate this many (deterministic first-N by stored order); 0 = all


@dataclass
class TrainConfig:
    # ---- identity (ftscale.identity.RunKey) and X values: copied into the result ----
    model: str  # model name in the study spec (identity); also the source when model_source is unset
    method: str  # "fmt" (full-model tuning), "lora" or "prompt"
    data_size: int  # D_f: finetuning examples (a seeded, nested subset of the training split)
    seed: int = 0  # seeds the data subset, data order, adapter init and dropout
    pet_size: int | None = None  # LoRA rank or prompt length |P|; None for fmt (default per method)
    study: str = "adhoc"  # study name (result identity)
    run_id: str | None = None  # run id; computed from ftscale.identity.RunKey when unset
    model_params: int | None = None  # X_m, non-embedding parameters; filled from the toy family when unset
    pretrain_tokens: int | None = None  # X_p, pretraining tokens of the base checkpoint; ditto

    # ---- base model ----
    # Hugging Face id, local folder (config.json + weights + tokenizer), or `toy:<name>[@<tokens>]`.
    model_source: str | None = None
    backend: str = "auto"  # "native" (fast pure-torch Llama path), "hf" (transformers+peft), "auto"

    # ---- data ----
    task: str | None = None  # built-in task, e.g. "toy-en-de" (train/dev/test from the toy world)
    train_path: str | None = None  # JSONL file or HF dataset folder (save_to_disk) with the train split
    dev_path: str | None = None  # dev split (checkpoint selection); required with train_path
    test_path: str | None = None  # test split (the reported loss); required with train_path
    data_format: str = "auto"  # "jsonl", "hf_disk" or "auto" (by the path: file → jsonl, folder → hf_disk)
    source_field: str = "source"  # field holding the input text
    target_field: str = "target"  # field holding the output text (the only tokens with loss)
    template: str = "translate"  # "translate", "summarize", "plain" or a string with {source}
    source_lang: str | None = None  # named in the template, e.g. "English" (built-in tasks set it)
    target_lang: str | None = None  # e.g. "German"
    max_source_tokens: int = 48  # source (with template) is cut to this many tokens
    max_target_tokens: int = 48  # target (with EOS) is cut to this many tokens
    dev_examples: int = 200  # dev examples used for checkpoint selection (first N); 0 = all
    test_examples: int = 500  # test examples for the reported loss (first N); 0 = all
    zero_shot: list[ZeroShotSet] = field(default_factory=list)  # extra sets, reported apart

    # ---- method ----
    lora_alpha: float | None = None  # LoRA scaling numerator (scale = alpha / rank); default 2·rank
    lora_dropout: float = 0.0  # dropout on the LoRA input path
    # module-name suffixes (peft's matching: a module matches when its dotted name is the target
    # or ends with "." + target), or "all-linear" / "peft-default"; None = DEFAULT_LORA_TARGETS
    lora_targets: list[str] | None = None

    # ---- optimisation (None = defaults_for(method, model_params)) ----
    learning_rate: float | None = None  # peak learning rate (AdamW)
    batch_size: int | None = None  # examples per optimizer step (global, over all processes)
    # examples per forward/backward pass in each process; gradients accumulate over the local
    # share of the batch (batch_size / processes). None = the whole local share at once.
    micro_batch_size: int | None = None
    # recompute each decoder layer's activations in the backward pass ("true"), or not
    # ("false"); "auto" = on only on a GPU where the memory estimate says the micro-batch's
    # activations would not fit otherwise (ftscale_trainer.memory)
    gradient_checkpointing: str = "auto"
    # split parameters, gradients and optimizer state across the processes (FSDP2, fmt only):
    # "fsdp", "none" (data parallel), or "auto" = fsdp only for fmt with several processes on
    # GPUs when the memory estimate says one unsharded process does not fit one GPU
    # (ftscale_trainer.runtime.choose_sharding). The saved config records what was chosen.
    sharding: str = "auto"
    max_steps: int | None = None  # optimizer steps; training stops at max_steps or max_epochs
    max_epochs: float | None = None  # passes over the D_f examples (paper: 100)
    warmup_steps: int | None = None  # linear warm-up steps, then cosine decay
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate · min_lr_ratio at the last step
    weight_decay: float | None = None  # AdamW decoupled weight decay
    grad_clip: float = 1.0  # max gradient norm; 0 = no clipping
    precision: str = "auto"  # "fp32", "bf16", "fp16"; auto = bf16 on a GPU that has it, else fp32
    # evaluate dev loss every N steps, and before the first step and at the last one; when
    # unset, `evals_per_epoch` times per pass over the D_f examples
    eval_interval: int | None = None
    # the evaluation spacing in examples seen, as a fraction of the data: every
    # D_f / evals_per_epoch examples (rounded to whole steps, at least one), so that a run on
    # 50 examples, which overfits within a few epochs, is evaluated as densely per epoch as
    # one on 800 (docs/trainer.md, "The protocol")
    evals_per_epoch: float | None = None
    # stop after N evaluations without a better dev loss; 0 = off (None = the method's default)
    early_stopping_patience: int | None = None

    # ---- evaluation extras ----
    generation: list[str] = field(default_factory=list)  # "bleu" (sacrebleu), "rougeL"; greedy
    generation_examples: int = 64  # test examples decoded for generation metrics
    max_new_tokens: int = 48  # greedy decoding length cap
    bleu_tokenizer: str = "13a"  # sacrebleu tokenizer: 13a, intl, zh, char, none, flores101/200

    # ---- runtime ----
    output_dir: str | None = None  # result.json, config.json, checkpoints (CLI --output wins)
    metrics_port: int | None = None  # Prometheus endpoint while training (CLI --metrics-port wins)
    threads: int | None = None  # torch CPU threads; default: torch's (OMP_NUM_THREADS)
    checkpoint_interval: int = 0  # also save a resumable checkpoint every N steps; 0 = only on SIGTERM
    # what to keep of the selected (best-dev) weights: "adapter" (LoRA/prompt, peft's
    # save_pretrained layout), "model" (a full transformers checkpoint: fmt, or LoRA merged into
    # the weights) or "none"; None = "adapter" for lora/prompt, "none" for fmt
    save: str | None = None
    # where to save; None = <output_dir>/adapter or <output_dir>/model. The resolved config (and
    # so the result's `config`) records the folder actually written.
    save_dir: str | None = None
    log_interval: int = 10  # steps between train-loss log lines / metric updates

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, doc: Any) -> TrainConfig:
        """Build and check a config from a JSON object. Raises ConfigError naming the bad key."""
        if not isinstance(doc, dict):
            raise ConfigError(f"the config must be a JSON object, got {type(doc).__name__}")
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in doc if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ConfigError(f"unknown config key(s): {', '.join(hints)}")
        missing = [name for name, f in known.items()
                   if f.default is MISSING and f.default_factory is MISSING and name not in doc]
        if missing:
            raise ConfigError(f"missing required config key(s): {', '.join(missing)}")
        hints = typing.get_type_hints(cls)
        values = {}
        for key, value in doc.items():
            if key == "zero_shot":
                values[key] = _zero_shot_sets(value)
            else:
                values[key] = _check_type(key, value, hints[key])
        config = cls(**values)
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        """Checks that need more than one field. Raises ConfigError."""
        _one_of("method", self.method, METHODS)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("backend", self.backend, BACKENDS)
        _one_of("data_format", self.data_format, DATA_FORMATS)
        _one_of("gradient_checkpointing", self.gradient_checkpointing, GRADIENT_CHECKPOINTING)
        _one_of("sharding", self.sharding, SHARDINGS)
        if self.sharding == "fsdp" and self.method != "fmt":
            raise ConfigError(f"sharding: fsdp is for full-model tuning (method fmt); {self.method} "
                              f"runs data parallel: use sharding auto or none")
        if self.save is not None:
            _one_of("save", self.save, SAVE_KINDS)
            if self.method == "fmt" and self.save == "adapter":
                raise ConfigError("save: adapter needs a PET method; fmt trains every weight, "
                                  "use save: model")
            if self.method == "prompt" and self.save == "model":
                raise ConfigError("save: model needs weights to merge into; a prompt-tuning "
                                  "prompt cannot be merged, use save: adapter")
        if self.template not in TEMPLATES and "{source}" not in self.template:
            raise ConfigError(f"template must be one of {TEMPLATES} or a string containing "
                              f"{{source}}, got {self.template!r}")
        for metric in self.generation:
            _one_of("generation", metric, GENERATION_METRICS)
        _one_of("bleu_tokenizer", self.bleu_tokenizer, BLEU_TOKENIZERS)
        _positive("data_size", self.data_size)
        if self.seed < 0:
            raise ConfigError("seed must be ≥ 0")
        if self.method == "fmt" and self.pet_size is not None:
            raise ConfigError("pet_size is the LoRA rank or prompt length; leave it unset for fmt")
        for name in ("pet_size", "batch_size", "max_steps", "eval_interval", "max_source_tokens",
                     "max_target_tokens", "warmup_steps", "max_new_tokens", "threads", "log_interval",
                     "micro_batch_size"):
            value = getattr(self, name)
            if value is not None and (name != "warmup_steps" or value != 0):
                _positive(name, value)
        for name in ("learning_rate", "max_epochs", "evals_per_epoch"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        for name in ("dev_examples", "test_examples", "generation_examples",
                     "early_stopping_patience", "checkpoint_interval"):
            if (getattr(self, name) or 0) < 0:
                raise ConfigError(f"{name} must be ≥ 0 (0 means all/off)")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError("lora_dropout must be in [0, 1)")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("min_lr_ratio must be in [0, 1]")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise ConfigError("weight_decay must be ≥ 0")
        if self.metrics_port is not None and not 0 <= self.metrics_port < 65536:
            raise ConfigError("metrics_port must be a TCP port (0–65535)")
        if self.task is None and self.train_path is None:
            raise ConfigError("no data: set `task` (e.g. \"toy-en-de\") or `train_path`, "
                              "`dev_path` and `test_path`")
        if self.task is not None and self.train_path is not None:
            raise ConfigError("set either `task` or `train_path`, not both")
        if self.train_path is not None and (self.dev_path is None or self.test_path is None):
            raise ConfigError("with `train_path`, also give `dev_path` (checkpoint selection) "
                              "and `test_path` (the reported loss)")
        if self.method == "lora" and self.lora_targets is not None and not self.lora_targets:
            raise ConfigError("lora_targets is empty: name the modules that get adapters, or "
                              f"leave it unset for {list(DEFAULT_LORA_TARGETS)}")
        names = [z.name for z in self.zero_shot]
        if len(set(names)) != len(names):
            raise ConfigError(f"zero_shot set names must be unique, got {names}")

    # ---- resolved values ---------------------------------------------------------------------
    @property
    def source(self) -> str:
        """Where the base model comes from (model_source, else the model name)."""
        return self.model_source or self.model

    def resolved(self) -> TrainConfig:
        """A copy with every None optimisation field filled from defaults_for()."""
        defaults = defaults_for(self.method, self.model_params)
        doc = self.to_dict()
        if doc["eval_interval"] is not None or doc["evals_per_epoch"] is not None:
            # the caller chose the spacing, in steps or per epoch: no default for the other
            defaults.pop("eval_interval", None)
            defaults.pop("evals_per_epoch", None)
        for key, value in defaults.items():
            if doc.get(key) is None:
                doc[key] = value
        if doc["eval_interval"] is None:
            doc["eval_interval"] = eval_steps(doc["data_size"], doc["evals_per_epoch"],
                                              doc["batch_size"])
        if self.method == "lora" and doc["lora_alpha"] is None:
            doc["lora_alpha"] = 2.0 * doc["pet_size"]
        if doc["save"] is None:
            doc["save"] = "none" if self.method == "fmt" else "adapter"
        doc["zero_shot"] = [ZeroShotSet(**z) for z in doc["zero_shot"]]
        return TrainConfig(**doc)


def defaults_for(method: str, model_params: int | None = None) -> dict[str, Any]:
    """Per-method optimisation defaults (torch-free).

    method: "fmt", "lora" or "prompt"; model_params: non-embedding parameters of the base model
    (None = assume a tiny toy model). Returns the keys learning_rate, batch_size, max_steps,
    max_epochs, warmup_steps, weight_decay, early_stopping_patience, pet_size (None for fmt)
    and the evaluation spacing: eval_interval (steps) or evals_per_epoch.
    Raises ConfigError for an unknown method.
    """
    _one_of("method", method, METHODS)
    table = _TINY if model_params is None or model_params < TINY_MODEL_PARAMS else _PAPER
    return dict(table[method])


def eval_steps(data_size: int, evals_per_epoch: float, batch_size: int) -> int:
    """Steps between dev evaluations when evaluating `evals_per_epoch` times per pass over
    `data_size` examples: the nearest whole number of steps to data_size / evals_per_epoch
    examples, at least 1."""
    return max(1, round(data_size / (evals_per_epoch * batch_size)))


# The paper's Appendix (1B models, Adafactor): LR/batch as chosen by its grid search; up to
# 200K steps or 100 epochs; |P| = 100; r = 4. Evaluation every 1000 steps (not stated in the
# paper; frequent enough for best-checkpoint selection at that length); no early stopping.
_PAPER: dict[str, dict[str, Any]] = {
    "fmt": dict(learning_rate=1e-3, batch_size=128, max_steps=200_000, max_epochs=100.0,
                warmup_steps=1000, weight_decay=0.0, eval_interval=1000,
                early_stopping_patience=0, pet_size=None),
    "lora": dict(learning_rate=1e-2, batch_size=16, max_steps=200_000, max_epochs=100.0,
                 warmup_steps=1000, weight_decay=0.0, eval_interval=1000,
                 early_stopping_patience=0, pet_size=4),
    "prompt": dict(learning_rate=3e-1, batch_size=16, max_steps=200_000, max_epochs=100.0,
                   warmup_steps=1000, weight_decay=0.0, eval_interval=1000,
                   early_stopping_patience=0, pet_size=100),
}

# The toy family (≈ 25K–450K non-embedding parameters) with AdamW: the paper's protocol in
# miniature (docs/trainer.md, "The protocol"). Every run trains until its dev loss stops
# improving — 2 evaluations per epoch, starting before the first step, stopping after 3 without
# a better one (1.5 epochs) — within a cap of 40 epochs or 1,000 steps, and keeps the best-dev
# checkpoint. So a run ends at its data's dev minimum, not at a step budget: with 50 examples
# that is a few epochs, with 800 several hundred steps. Learning rates: a toy model's own come
# from the world build's sweep (family.json, ftscale_trainer.toy.SWEEP_RATES); these are the
# fallbacks, the rates the sweep picks most often.
_TINY: dict[str, dict[str, Any]] = {
    "fmt": dict(learning_rate=1e-3, batch_size=16, max_steps=1000, max_epochs=40.0,
                warmup_steps=5, weight_decay=0.0, evals_per_epoch=2.0,
                early_stopping_patience=3, pet_size=None),
    "lora": dict(learning_rate=3e-3, batch_size=16, max_steps=1000, max_epochs=40.0,
                 warmup_steps=5, weight_decay=0.0, evals_per_epoch=2.0,
                 early_stopping_patience=3, pet_size=4),
    "prompt": dict(learning_rate=1e-1, batch_size=16, max_steps=1000, max_epochs=40.0,
                   warmup_steps=5, weight_decay=0.0, evals_per_epoch=2.0,
                   early_stopping_patience=3, pet_size=8),
}


# ---- type checking helpers ---------------------------------------------------------------------
def _one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def _check_type(key: str, value: Any, hint: Any) -> Any:
    """Check a JSON value against a field's annotation; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key} has a bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_check_type(key, v, item) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {hint}")  # a bug in this module, not the config


def _zero_shot_sets(value: Any) -> list[ZeroShotSet]:
    if not isinstance(value, list):
        raise ConfigError("zero_shot must be a list of objects with name and task or path")
    hints = typing.get_type_hints(ZeroShotSet)
    sets = []
    for item in value:
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"each zero_shot entry needs a name, got {item!r}")
        unknown = sorted(set(item) - set(hints))
        if unknown:
            raise ConfigError(f"unknown zero_shot key(s): {', '.join(unknown)} "
                              f"(allowed: {', '.join(hints)})")
        checked = {k: _check_type(f"zero_shot.{k}", v, hints[k]) for k, v in item.items()}
        zs = ZeroShotSet(**checked)
        if (zs.task is None) == (zs.path is None):
            raise ConfigError(f"zero_shot set {zs.name!r}: give exactly one of task or path")
        sets.append(zs)
    return sets
