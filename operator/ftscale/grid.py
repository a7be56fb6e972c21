"""Grid expansion: a ScalingStudy spec → the list of runs it asks for, with stable run ids.

One function for both executors: `ftscale run` (local subprocesses) and the operator (Jobs) call
`expand(spec)` and get the same runs in the same order. A run's identity is only
(model, method, PET size, data size, seed) (ftscale.identity), so editing images, resources,
parallelism or law settings never renames a run, and adding a model, size, data size or seed
only adds runs.

The grid (docs/study.md; the paper, Zhang et al. ICLR 2024, §3.4):
* every model × method × data size × seed, where PET methods run their `defaultSize` on every
  model and their other sizes only on `sizeSweepModels` (all models when omitted);
* a method's `dataSizes` replace `spec.dataSizes` for that method.

Also here, because both executors need them and they depend only on the spec:
* `trainer_config(study, spec, run)`: the JSON document the trainer's `--config` takes
  (`trainer_configs` for many runs: the spec is defaulted once);
* `factor_membership(spec, runs)`: which runs form each (method, factor) sweep of the fit;
* `law_options_spec(spec)`: spec.law as ftscale.law.LawOptions.from_spec reads it.
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from ftscale.identity import RunKey, run_id
from ftscale.spec import with_defaults

FMT = "fmt"
PET_METHODS = ("lora", "prompt")

# Factor keys as the law engine (ftscale.law) names them.
MODEL_SIZE = "model_size"
PRETRAIN_TOKENS = "pretrain_tokens"
PET_SIZE = "pet_size"
# spec.law.factors (CRD enum, camelCase) → law engine factor keys.
FACTOR_KEYS = {"modelSize": MODEL_SIZE, "pretrainingTokens": PRETRAIN_TOKENS,
               "petSize": PET_SIZE}
# A sweep needs at least two distinct X values to say anything about an exponent.
MIN_FACTOR_VALUES = 2


@dataclass(frozen=True)
class PlannedRun:
    """One run of the grid and everything an executor needs to start it."""

    key: RunKey
    model: dict[str, Any] = field(compare=False, repr=False)  # the spec.models entry
    method: dict[str, Any] = field(compare=False, repr=False)  # the spec.methods entry
    training: dict[str, Any] = field(compare=False, repr=False)  # effective overrides
    gpus: int = field(default=0, compare=False)
    resources: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def run_id(self) -> str:
        return run_id(self.key)


def default_size(method: dict[str, Any]) -> int | None:
    """The PET size a method uses for the model-size and pretraining factors (None for fmt)."""
    if method["name"] == FMT:
        return None
    return method.get("defaultSize", method["sizes"][0])


def _merged_training(spec: dict, method: dict, model: dict) -> dict[str, Any]:
    """spec.training < methods[].training < models[].training; learningRateScale multiplies."""
    out: dict[str, Any] = {}
    scale = 1.0
    for layer in (spec.get("training", {}), method.get("training", {}),
                  model.get("training", {})):
        for key, value in layer.items():
            if key == "learningRateScale":
                scale *= value
            else:
                out[key] = value
    if scale != 1.0:
        out["learningRateScale"] = scale
    return out


def _merged_resources(spec: dict, model: dict) -> dict[str, Any]:
    base = copy.deepcopy(spec.get("execution", {}).get("resources", {}))
    for part, values in model.get("resources", {}).items():
        base.setdefault(part, {}).update(values)
    return base


def expand(spec: dict[str, Any]) -> list[PlannedRun]:
    """All runs of a (validated) spec, in spec order: model, method, PET size, data size, seed.
    Defaults are applied here too, so the operator can pass the API server's spec as is."""
    spec = with_defaults(spec)
    runs: list[PlannedRun] = []
    seen: set[RunKey] = set()
    gpus_default = spec.get("execution", {}).get("gpusPerRun", 0)
    for model in spec["models"]:
        for method in spec["methods"]:
            data_sizes = method.get("dataSizes", spec["dataSizes"])
            if method["name"] == FMT:
                sizes: list[int | None] = [None]
            else:
                sweep = method.get("sizeSweepModels")
                on_sweep = sweep is None or model["name"] in sweep
                sizes = list(method["sizes"]) if on_sweep else [default_size(method)]
            training = _merged_training(spec, method, model)
            resources = _merged_resources(spec, model)
            gpus = model.get("gpus", gpus_default)
            for size in sizes:
                for data_size in data_sizes:
                    for seed in spec["seeds"]:
                        key = RunKey(model["name"], method["name"], size, data_size, seed)
                        if key in seen:  # impossible for a valid spec; cheap to guard
                            continue
                        seen.add(key)
                        runs.append(PlannedRun(key, model, method, training, gpus, resources))
    return runs


# ---- the trainer's config --------------------------------------------------------------
# spec.training / methods[].training / models[].training keys → trainer config keys
# (ftscale_trainer.config.TrainConfig; tests/unit/test_grid.py checks it accepts every example).
TRAINING_KEYS = {
    "learningRate": "learning_rate", "batchSize": "batch_size", "maxSteps": "max_steps",
    "maxEpochs": "max_epochs", "warmupSteps": "warmup_steps",
    "minLearningRateRatio": "min_lr_ratio", "weightDecay": "weight_decay",
    "gradientClip": "grad_clip", "precision": "precision", "evalInterval": "eval_interval",
    "earlyStoppingPatience": "early_stopping_patience",
    "microBatchSize": "micro_batch_size", "gradientCheckpointing": "gradient_checkpointing",
    "sharding": "sharding",
}
METHOD_KEYS = {"loraTargets": "lora_targets", "loraAlpha": "lora_alpha",
               "loraDropout": "lora_dropout"}
TASK_KEYS = {"promptTemplate": "template", "sourceLanguage": "source_lang",
             "targetLanguage": "target_lang", "maxSourceTokens": "max_source_tokens",
             "maxTargetTokens": "max_target_tokens"}
DATA_FORMATS = {"jsonl": "jsonl", "hf-disk": "hf_disk"}
# execution.save (one value for the study) → the trainer's `save` per method: what each
# method has to keep (fmt has no adapter; a prompt cannot be merged into the weights).
SAVE_BY_METHOD = {"none": {"fmt": "none", "lora": "none", "prompt": "none"},
                  "adapter": {"fmt": "none", "lora": "adapter", "prompt": "adapter"},
                  "model": {"fmt": "model", "lora": "model", "prompt": "adapter"}}


class GridError(ValueError):
    """The spec is valid against the CRD but a run cannot be configured from it."""


def _under(root: str | None, path: str) -> str:
    if root is None or path.startswith("/"):
        return path
    return f"{root.rstrip('/')}/{path}"


def _model_source(source: str, models_root: str | None) -> str:
    if source.startswith("toy:"):
        return source
    return _under(models_root, source)


def volume_root(spec: dict[str, Any], volume: str) -> str | None:
    """Mount path of execution.volumes.<volume> when the study mounts one, else None."""
    v = spec.get("execution", {}).get("volumes", {}).get(volume)
    return v.get("mountPath", f"/{volume}") if v else None


def trainer_config(study_name: str, spec: dict[str, Any], run: PlannedRun, *,
                   data_root: str | None = None,
                   models_root: str | None = None) -> dict[str, Any]:
    """The JSON document the trainer takes (`python -m ftscale_trainer --config FILE`), i.e.
    the fields of ftscale_trainer.config.TrainConfig that the spec decides.

    Keys the spec leaves out are left out, so the trainer's per-method defaults apply. Runtime
    keys (output_dir, threads, metrics_port) are the executor's to add. Relative data paths
    are resolved under `data_root` and model sources under `models_root` (default: the mount
    paths of execution.volumes.data / .models when the study has them; a Hugging Face id
    `org/name` then means the folder <models mount>/org/name). Raises GridError when
    learningRateScale is used without a learning rate to scale.
    """
    return trainer_configs(study_name, spec, [run], data_root=data_root, models_root=models_root)[0]


def trainer_configs(study_name: str, spec: dict[str, Any], runs: Iterable[PlannedRun], *,
                    data_root: str | None = None,
                    models_root: str | None = None) -> list[dict[str, Any]]:
    """trainer_config of each run, in order. Defaults are applied to the spec once: applying
    them walks the whole spec (every model), which per run made a 10,000-run grid take
    seconds."""
    spec = with_defaults(spec)
    return [_trainer_config(study_name, spec, run, data_root, models_root) for run in runs]


def _trainer_config(study_name: str, spec: dict[str, Any], run: PlannedRun,
                    data_root: str | None, models_root: str | None) -> dict[str, Any]:
    key, model, method = run.key, run.model, run.method
    data_root = data_root if data_root is not None else volume_root(spec, "data")
    models_root = models_root if models_root is not None else volume_root(spec, "models")
    doc: dict[str, Any] = {
        "study": study_name,
        "run_id": run.run_id,
        "model": key.model,
        "model_source": _model_source(model["source"], models_root),
        "method": key.method,
        "pet_size": key.pet_size,
        "data_size": key.data_size,
        "seed": key.seed,
    }
    if "parameters" in model:
        doc["model_params"] = model["parameters"]
    if "pretrainingTokens" in model:
        doc["pretrain_tokens"] = model["pretrainingTokens"]

    task = spec["task"]
    data = task.get("data")
    if data:
        doc.update(train_path=_under(data_root, data["train"]),
                   dev_path=_under(data_root, data["dev"]),
                   test_path=_under(data_root, data["test"]),
                   data_format=DATA_FORMATS[data.get("format", "jsonl")],
                   source_field=data.get("sourceField", "source"),
                   target_field=data.get("targetField", "target"))
    else:
        doc["task"] = task["name"]
    for ours, theirs in TASK_KEYS.items():
        if ours in task:
            doc[theirs] = task[ours]

    evaluation = spec.get("evaluation", {})
    generation = evaluation.get("generation", {})
    if generation.get("metrics"):
        doc["generation"] = list(generation["metrics"])
        doc["generation_examples"] = generation.get("maxExamples", 200)
        doc["max_new_tokens"] = generation.get("maxNewTokens", 64)
        if "bleu" in generation["metrics"]:
            doc["bleu_tokenizer"] = generation.get("bleuTokenizer", "13a")
    if "devExamples" in evaluation:
        doc["dev_examples"] = evaluation["devExamples"]
    if "testExamples" in evaluation:
        doc["test_examples"] = evaluation["testExamples"]
    custom_sets = {z["name"]: z for z in task.get("zeroShotSets", [])}
    zero_shot = []
    for name in evaluation.get("zeroShot", []):
        if name in custom_sets:
            z = custom_sets[name]
            entry = {"name": name, "path": _under(data_root, z["path"])}
            if "sourceLanguage" in z:
                entry["source_lang"] = z["sourceLanguage"]
        else:
            entry = {"name": name, "task": name}  # a built-in task's test split
        zero_shot.append(entry)
    if zero_shot:
        doc["zero_shot"] = zero_shot

    training = dict(run.training)
    scale = training.pop("learningRateScale", None)
    for ours, theirs in TRAINING_KEYS.items():
        if ours in training:
            doc[theirs] = training[ours]
    if scale is not None:
        if "learning_rate" not in doc:
            raise GridError(
                f"model {key.model}: learningRateScale needs a learningRate to scale; set "
                f"learningRate for method {key.method} (spec.training or methods[].training)")
        doc["learning_rate"] = doc["learning_rate"] * scale
    for ours, theirs in METHOD_KEYS.items():
        if ours in method:
            doc[theirs] = method[ours]
    save = spec.get("execution", {}).get("save")
    if save:
        doc["save"] = SAVE_BY_METHOD[save][key.method]
    return doc


# ---- what the fit needs ---------------------------------------------------------------
def _keys(runs: Iterable[Any]) -> list[RunKey]:
    """Accept PlannedRuns, RunKeys, RunResults or result rows (dicts)."""
    out = []
    for r in runs:
        if isinstance(r, RunKey):
            out.append(r)
        elif isinstance(r, PlannedRun):
            out.append(r.key)
        elif isinstance(r, dict):
            out.append(RunKey(r["model"], r["method"], r.get("pet_size"), r["data_size"],
                              r["seed"]))
        else:
            out.append(RunKey(r.model, r.method, r.pet_size, r.data_size, r.seed))
    return out


def pretraining_chain(spec: dict[str, Any]) -> tuple[str, list[str]] | None:
    """The base model whose intermediate checkpoints form the pretraining-data factor, and the
    chain (base + its checkpoints). With several bases, the one with the most checkpoints
    (first listed on a tie). None when no model is a checkpoint."""
    by_base: dict[str, list[str]] = defaultdict(list)
    for m in spec["models"]:
        if "checkpointOf" in m:
            by_base[m["checkpointOf"]].append(m["name"])
    if not by_base:
        return None
    order = [m["name"] for m in spec["models"]]
    base = max(by_base, key=lambda b: (len(by_base[b]), -order.index(b)))
    return base, [base] + by_base[base]


def pet_sweep_model(spec: dict[str, Any], method: dict[str, Any]) -> str:
    """The model whose runs form a PET method's PET-size factor: the first of its
    sizeSweepModels, else the pretraining chain's base, else the first model."""
    if method.get("sizeSweepModels"):
        return method["sizeSweepModels"][0]
    chain = pretraining_chain(spec)
    if chain:
        return chain[0]
    return next(m["name"] for m in spec["models"] if "checkpointOf" not in m)


def factor_membership(spec: dict[str, Any], runs: Iterable[Any]) -> dict[str, dict[str, list[str]]]:
    """Which runs belong to each (method, factor) sweep: {method: {factor: [run ids]}}.

    * model_size: the method at its default PET size on every model that is not a checkpoint;
    * pretrain_tokens: the method at its default PET size on the pretraining chain;
    * pet_size: a PET method at every size on its sweep model.
    A run can be in several factors (the chain's base model is in all three). Factors not in
    spec.law.factors, and sweeps with fewer than two distinct X values, are left out.
    `runs` may be PlannedRuns, RunKeys, RunResults or result rows.
    """
    spec = with_defaults(spec)
    wanted = {FACTOR_KEYS[f] for f in spec["law"]["factors"]}
    models = {m["name"]: m for m in spec["models"]}
    chain = pretraining_chain(spec)
    keys = [k for k in _keys(runs) if k.model in models]
    out: dict[str, dict[str, list[str]]] = {}
    for method in spec["methods"]:
        name = method["name"]
        dsize = default_size(method)
        mine = [k for k in keys if k.method == name]
        groups: dict[str, list[RunKey]] = {}
        if MODEL_SIZE in wanted:
            groups[MODEL_SIZE] = [k for k in mine if k.pet_size == dsize
                                  and "checkpointOf" not in models[k.model]]
        if PRETRAIN_TOKENS in wanted and chain:
            groups[PRETRAIN_TOKENS] = [k for k in mine if k.pet_size == dsize
                                       and k.model in chain[1]]
        if PET_SIZE in wanted and name in PET_METHODS:
            sweep_model = pet_sweep_model(spec, method)
            groups[PET_SIZE] = [k for k in mine if k.model == sweep_model]
        for factor, members in groups.items():
            distinct = {k.pet_size if factor == PET_SIZE else k.model for k in members}
            if len(distinct) >= MIN_FACTOR_VALUES:
                out.setdefault(name, {})[factor] = [run_id(k) for k in members]
    return out


def law_options_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """spec.law in the form ftscale.law.LawOptions.from_spec reads (an adapter: the CRD speaks
    camelCase factor names and has `factors`, which decides membership, not the fit)."""
    law = copy.deepcopy(with_defaults(spec)["law"])
    law.pop("factors", None)
    if "stage1Factors" in law:
        law["stage1Factors"] = [FACTOR_KEYS[f] for f in law["stage1Factors"]]
    held = law.get("heldOut", {})
    if "factors" in held:
        held["factors"] = {FACTOR_KEYS[name]: sub for name, sub in held["factors"].items()}
    return law


# The X column of each factor in result rows (ftscale.results.RunResult.row()).
X_COLUMNS = {MODEL_SIZE: "model_params", PRETRAIN_TOKENS: "pretrain_tokens",
             PET_SIZE: "pet_size"}


def fit_job_input(study_name: str, spec: dict[str, Any], results: Iterable[Any]) -> dict[str, Any]:
    """The input document of the fit (`python -m ftscale.law.job --input`, and `ftscale run`):
    {"study", "law", "factors": {method: [{factor, x_column, run_ids}]}, "results"}.

    `results` are RunResults (or result dicts of the contract); only succeeded runs of the
    current grid decide factor membership, so a study that is still running, or one with
    failed runs, gets the factors its finished runs can support.
    """
    from ftscale.results import RunResult, result_from_dict  # local: keep grid import-light

    parsed = [r if isinstance(r, RunResult) else result_from_dict(r) for r in results]
    in_grid = {p.run_id for p in expand(spec)}
    usable = [r for r in parsed if r.ok and r.run_id in in_grid]
    membership = factor_membership(spec, usable)
    factors = {method: [{"factor": factor, "x_column": X_COLUMNS[factor], "run_ids": ids}
                        for factor, ids in groups.items()]
               for method, groups in membership.items()}
    return {
        "study": study_name,
        "law": law_options_spec(spec),
        "factors": factors,
        "results": [json.loads(r.to_compact_json()) for r in parsed if r.run_id in in_grid],
    }
