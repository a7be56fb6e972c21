"""Writes crds/scalingstudy.yaml, the ScalingStudy CustomResourceDefinition.

The YAML file is the single source of truth for the study spec (docs/study.md): the API server,
`ftscale run` (ftscale.spec) and the operator all read it. This script exists only because the
same sub-schemas (training settings, volumes, resources) appear in several places and must not
drift apart; tests/unit/test_spec_crd.py fails when the committed YAML differs from what this
script writes. Run it after editing:

    $(scripts/python-env.sh) crds/generate.py

Every field carries a description (so `kubectl explain scalingstudy.spec...` teaches the spec),
and every CEL rule carries a message that names the field and says how to fix it. CEL rules are
re-checked in Python by ftscale.spec (each rule text is mapped to a Python function there; a test
fails when a rule has no re-check).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

# The API's identity, name limits, phases and the status-entry fields are ftscale.api's facts.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))
from ftscale import spec_patterns as patterns  # noqa: E402
from ftscale.api import meta, phases  # noqa: E402
from ftscale.api.status import ENTRY_FIELDS, PHASE_ENUM, RECENT_FAILURES  # noqa: E402
from ftscale.spec import BUILTIN_TASKS as BUILTIN_TASK_NAMES, held_out_rules  # noqa: E402

GROUP, VERSION, KIND, PLURAL = meta.GROUP, meta.VERSION, meta.KIND, meta.PLURAL

MAX_RUNS = meta.MAX_RUNS
MAX_STUDY_NAME = meta.MAX_STUDY_NAME
MAX_MODELS = 64
MAX_DATA_SIZES = 64
MAX_SEEDS = 16
MAX_PET_SIZES = 32
# A LoRA rank or soft-prompt length: a rank above a model's hidden size adds nothing (the
# largest models we know have d_model ≤ 16,384, and the paper's ranks stop at 64), and a prompt
# longer than 4,096 tokens exceeds any context the trainer supports. Above it is a typo (10⁹
# would allocate until the run dies).
MAX_PET_SIZE = 4096
# Labels, node selectors and resource maps: far above any real use, and a bound the API
# server's CEL cost estimate needs (docs/study.md, "What a bad study looks like").
MAX_MAP_ENTRIES = 64
MAX_RESOURCE_NAMES = 16


# ---- small builders: every leaf gets a description -------------------------------------------
def obj(description, properties, required=(), rules=(), **extra):
    out = {"type": "object", "description": description, "properties": properties}
    if required:
        out["required"] = list(required)
    if rules:
        out["x-kubernetes-validations"] = [dict(r) for r in rules]
    out.update(extra)
    return out


# CEL rules are admitted only when their estimated cost fits a budget, and a string's cost is
# its maximum length: every string gets one (names and sources, which rules compare, short).
DEFAULT_MAX_LENGTH = 4096


def string(description, **extra):
    extra.setdefault("maxLength", DEFAULT_MAX_LENGTH)
    return {"type": "string", "description": description, **extra}


def integer(description, **extra):
    return {"type": "integer", "description": description, **extra}


def number(description, **extra):
    return {"type": "number", "description": description, **extra}


def boolean(description, **extra):
    return {"type": "boolean", "description": description, **extra}


# Lists of distinct scalars: the API server refuses a repeat as `<path>[i]: Duplicate value: v`,
# naming the value (a CEL rule's message cannot afford to: see docs/study.md).
SET = {"x-kubernetes-list-type": "set"}


def array(description, items, **extra):
    return {"type": "array", "description": description, "items": items, **extra}


def rule(expression, message, *, message_expression=None, field_path=None):
    """A CEL rule. `message_expression` (CEL) words the failure with the offending value;
    `message` is the fallback the API server uses when it cannot evaluate that expression.
    `field_path` points the error at the field the rule is about (e.g. `.dataSizes` for a rule
    written on spec), instead of the object the rule sits on. ftscale.spec mirrors all three."""
    out = {"rule": expression, "message": message}
    if message_expression:
        out["messageExpression"] = message_expression
    if field_path:
        out["fieldPath"] = field_path
    return out


def label_map(description):
    """Kubernetes labels (or a node selector): keys `[prefix/]name` and values as the API
    server checks them on the Jobs and pods they end up on — refused when the study is
    applied, not by every Job create."""
    key_ok = (f"k.size() <= {patterns.LABEL_KEY_MAX} && "
              f"k.matches(r'{patterns.LABEL_KEY}')")
    words = ("[prefix/]name, the name at most 63 letters, digits, -, _ and . starting and "
             "ending with a letter or digit, the prefix a DNS subdomain")
    return {"type": "object", "description": description,
            "maxProperties": MAX_MAP_ENTRIES,
            "additionalProperties": string("A value: at most 63 letters, digits, '-', '_' and "
                                           "'.', starting and ending with a letter or digit "
                                           "(may be empty).",
                                           maxLength=63, pattern=patterns.LABEL_VALUE),
            "x-kubernetes-validations": [rule(
                f"self.all(k, {key_ok})",
                f"every key must be {words}",
                message_expression=(f"'key ' + self.filter(k, !({key_ok}))[0] + "
                                    f"' is not a label key: use {words}'"))],
            }


# A Kubernetes quantity, never negative (a request or limit of -8 CPUs is a typo the kubelet
# would refuse on every pod). int-or-string: `cpu: 2` and `cpu: "500m"` are both usual.
QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True, "minimum": 0,
            "pattern": patterns.QUANTITY}


def resources(description):
    quantity_map = lambda what: {  # noqa: E731 - a two-use local helper
        "type": "object",
        "description": f"{what} by resource name (cpu, memory, ephemeral-storage, ...), "
                       "as Kubernetes quantities. GPUs are set with `gpus`, not here.",
        "maxProperties": MAX_RESOURCE_NAMES,
        "additionalProperties": dict(QUANTITY),
    }
    return obj(description, {
        "requests": quantity_map("Requests"),
        "limits": quantity_map("Limits"),
    })


# ---- training settings: shared, per method, per model ----------------------------------------
def training(description, *, with_defaults: bool):
    d = (lambda v: {"default": v}) if with_defaults else (lambda v: {})
    return obj(description, {
        "learningRate": number(
            "Peak learning rate. Omit to use the trainer's per-method default (the paper's "
            "grid-searched values: fmt 1e-3, lora 1e-2, prompt 3e-1, scaled for small models).",
            exclusiveMinimum=True, minimum=0),
        "learningRateScale": number(
            "Multiplies the learning rate. Set it per model (models[].training) to lower the "
            "rate for larger models while keeping each method's own rate.",
            exclusiveMinimum=True, minimum=0),
        "batchSize": integer("Examples per optimizer step (after gradient accumulation). "
                             "Omit for the trainer's per-method default.", minimum=1),
        "microBatchSize": integer("Examples per forward/backward pass in each process; "
                                  "gradients accumulate up to batchSize. Omit for the whole "
                                  "batch, or less on a GPU where the trainer's memory estimate "
                                  "says it would not fit.", minimum=1),
        "gradientCheckpointing": string("Recompute activations in the backward pass to save "
                                        "memory. `auto` turns it on only on a GPU where the "
                                        "memory estimate needs it. Quote \"true\"/\"false\".",
                                        enum=["auto", "true", "false"]),
        "sharding": string("Split parameters, gradients and optimizer state across the run's "
                           "processes (FSDP; fmt only). `auto` shards only on GPUs when the "
                           "memory estimate says the model does not fit one GPU "
                           "(docs/trainer.md, \"Sharding\").", enum=["auto", "none", "fsdp"]),
        "maxSteps": integer("Upper bound on optimizer steps. Training stops at maxSteps or "
                            "maxEpochs, whichever comes first (the paper: 200K steps or 100 "
                            "epochs).", minimum=1),
        "maxEpochs": number("Upper bound on passes over the finetuning data.",
                            exclusiveMinimum=True, minimum=0),
        "warmupSteps": integer("Linear warm-up steps before the cosine decay.", minimum=0),
        "minLearningRateRatio": number("The cosine schedule decays to this fraction of the "
                                       "peak learning rate at the last step.", minimum=0,
                                       maximum=1),
        "weightDecay": number("Decoupled weight decay (AdamW).", minimum=0),
        "gradientClip": number("Clip the global gradient norm to this value; 0 disables.",
                               minimum=0),
        "precision": string("Numeric precision of training. `auto` picks bf16 on GPUs that "
                            "support it and fp32 elsewhere.",
                            enum=["auto", "fp32", "bf16", "fp16"]),
        "evalInterval": integer("Evaluate dev loss every this many steps (best-dev "
                                "checkpoint selection, paper §3.6). Omit for a trainer "
                                "default based on the run length.", minimum=1),
        "earlyStoppingPatience": integer("Stop after this many dev evaluations without "
                                         "improvement; 0 never stops early.", minimum=0),
    }, **d({}))


def volume(description, default_mount):
    return obj(description, {
        "claimName": string("PersistentVolumeClaim in the study's namespace to mount.",
                            minLength=1, maxLength=253, pattern=patterns.DNS_SUBDOMAIN),
        "mountPath": string("Where the volume is mounted in run pods.",
                            default=default_mount, pattern=r"^/"),
        "subPath": string("Sub-directory of the volume to mount instead of its root."),
        "readOnly": boolean("Mount read-only. Models and data are only read; results are "
                            "written, so the results volume is always mounted read-write."),
    }, required=["claimName"])


def toleration():
    return obj("A Kubernetes toleration (core/v1 Toleration) for run pods.", {
        "key": string("Taint key the toleration matches; empty matches all keys with "
                      "operator Exists."),
        "operator": string("Exists or Equal.", enum=["Exists", "Equal"]),
        "value": string("Taint value to match with operator Equal."),
        "effect": string("Taint effect to match; empty matches all.",
                         enum=["", "NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": integer("For NoExecute: how long the pod stays bound after "
                                     "the taint appears."),
    })


# ---- the spec ----------------------------------------------------------------------------
DNS_LABEL = patterns.DNS_LABEL
# Built-in tasks of the trainer (ftscale.spec.BUILTIN_TASKS, kept equal to
# ftscale_trainer.world.TASKS by a test): evaluation.zeroShot may name them without a
# task.zeroShotSets entry.
BUILTIN_TASKS = list(BUILTIN_TASK_NAMES)


def relative_path(description):
    """A path read from the data volume: relative to its mount path and never climbing out of
    it (a `..` component), so a study reads only the volume it mounts — and, locally, only
    files under --data-root or the study's folder. (The API server's error shows the path and
    the value, so the message needs neither.)"""
    inside = ("!self.startsWith('/') && self != '..' && !self.startsWith('../') && "
              "!self.endsWith('/..') && !self.contains('/../')")
    return string(description, minLength=1, maxLength=1024, **{"x-kubernetes-validations": [
        rule(inside, "must be a path relative to the data volume, without '..'")]})

TASK = obj(
    "What the models are finetuned on and evaluated with. Either a built-in task of the "
    "trainer (`name`, e.g. toy-en-de from the offline tiny world) or your own data (`data`). "
    "Immutable: changing the task would mix incomparable results.",
    {
        "name": string("A built-in task of the trainer (toy-en-de, toy-en-fr, toy-fr-de, toy-sum) "
                       "or a free name for custom `data`.", minLength=1,
                       pattern=DNS_LABEL, maxLength=63),
        "data": obj(
            "Your own finetuning data, read from the data volume (execution.volumes.data) "
            "or, locally, from disk. Paths are relative to the data volume's mount path.",
            {
                "format": string("jsonl: one JSON object per line; hf-disk: a dataset "
                                 "saved with datasets' save_to_disk.",
                                 enum=["jsonl", "hf-disk"], default="jsonl"),
                "train": relative_path("Training split (file or directory). Runs take the "
                                       "first D_f examples of a seed-specific shuffle of it."),
                "dev": relative_path("Dev split, used to pick the best checkpoint."),
                "test": relative_path("Test split: the fitted loss is measured on it."),
                "sourceField": string("Field holding the input text.", default="source"),
                "targetField": string("Field holding the target text (the loss is taken "
                                      "on it only).", default="target"),
            }, required=["train", "dev", "test"]),
        "promptTemplate": string("How an input is shown to the model: translate, summarize, "
                                 "plain, or your own text in which `{source}` is replaced by "
                                 "the source text (and `{source_lang}`, `{target_lang}` by the "
                                 "language names); no other braces. Omit for the task's "
                                 "default.", minLength=1),
        "sourceLanguage": string("Source language named by the translate/summarize "
                                 "templates, e.g. English (built-in tasks set it)."),
        "targetLanguage": string("Target language named by the templates, e.g. German."),
        "maxSourceTokens": integer("Truncate inputs to this many tokens.", minimum=1),
        "maxTargetTokens": integer("Truncate targets to this many tokens.", minimum=1),
        "zeroShotSets": array(
            "Extra evaluation sets for zero-shot transfer (paper Fig. 6), e.g. a related "
            "language pair. Built-in tasks bring their own; list them in evaluation.zeroShot.",
            obj("One zero-shot evaluation set.", {
                "name": string("Name used in evaluation.zeroShot and in results.",
                               pattern=DNS_LABEL, maxLength=63),
                "path": relative_path("jsonl file on the data volume (relative to its mount "
                                      "path)."),
                "sourceLanguage": string("Source language of this set, named in the prompt "
                                         "(e.g. French for a French→German set)."),
            }, required=["name", "path"]),
            maxItems=16, **{"x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"]}),
    },
    required=["name"],
    rules=[rule("!has(self.promptTemplate) || self.promptTemplate in ['translate', "
                "'summarize', 'plain'] || self.promptTemplate.contains('{source}')",
                "spec.task.promptTemplate must be translate, summarize, plain, or contain "
                "{source} where the input goes",
                message_expression="'spec.task.promptTemplate must be translate, summarize, "
                                   "plain, or contain {source} where the input goes: got ' + "
                                   "self.promptTemplate",
                field_path=".promptTemplate"),
           rule("!has(self.promptTemplate) || self.promptTemplate in ['translate', "
                f"'summarize', 'plain'] || self.promptTemplate.matches(r'{patterns.TEMPLATE}')",
                "spec.task.promptTemplate may use only the placeholders {source}, {source_lang} "
                "and {target_lang}; other braces break every run",
                message_expression="'spec.task.promptTemplate may use only the placeholders "
                                   "{source}, {source_lang} and {target_lang} (other braces "
                                   "break every run): got ' + self.promptTemplate",
                field_path=".promptTemplate"),
           rule("self == oldSelf",
                "spec.task is immutable: results of a different task cannot be mixed into "
                "one scaling law; create a new ScalingStudy instead")],
)

# A git revision as the hub names them: a branch, tag (both may hold `/`) or commit hash.
REVISION = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"

MODEL = obj(
    "One base model: a point on the model-size axis (X_m) and, with checkpointOf, on the "
    "pretraining-data axis (X_p).",
    {
        "name": string("Short name, part of every run's identity and Job name "
                       "(lower-case letters, digits and '-').",
                       pattern=DNS_LABEL, maxLength=30),
        "source": string("Where the checkpoint comes from: a Hugging Face model id already in "
                         "the models volume's cache, a path on the models volume (relative to "
                         "its mount path, or absolute), or toy:<name>[@<tokens>] for the "
                         "offline tiny world (an intermediate checkpoint at <tokens> "
                         "pretraining tokens).", minLength=1, maxLength=512),
        "revision": string("A revision of a Hugging Face model id: branch, tag or commit "
                           "(e.g. Pythia's intermediate checkpoints step1000 ... step143000, "
                           "with checkpointOf on the model of the final one). Cluster: the "
                           "operator downloads it into execution.modelCache before the model's "
                           "runs start (docs/cluster-install.md, \"Hub models and revisions\"); "
                           "without a model cache a revision is refused. Default: main.",
                           minLength=1, maxLength=128, pattern=REVISION),
        "parameters": integer("X_m: non-embedding parameters (the paper's model size). Known "
                              "for toy: models; set it for other checkpoints, or their runs "
                              "cannot join the model-size fit.", minimum=1),
        "pretrainingTokens": integer("X_p: tokens the checkpoint was pretrained on. Known for "
                                     "toy: models; set it for other checkpoints when the "
                                     "pretraining-data factor is studied.", minimum=1),
        "checkpointOf": string("Marks this model as an intermediate checkpoint of another "
                               "model of this study (by name): it joins the pretraining-data "
                               "factor of that model, not the model-size factor.",
                               pattern=DNS_LABEL, maxLength=30),
        "gpus": integer("nvidia.com/gpu per run pod of this model; overrides "
                        "execution.gpusPerRun. Locally: devices one run uses.", minimum=0,
                        maximum=64),
        "nodes": integer("Nodes (pods) one run of this model spans, each with the model's gpus, "
                         "for models that need more than one node: > 1 makes the run an "
                         "Indexed Job of that many pods plus a headless Service, and torchrun "
                         "on every pod meets the others through a c10d rendezvous on the pod "
                         "of index 0 (docs/cluster-install.md, \"Multi-node runs\"). Cluster "
                         "only: locally a run uses one machine.", minimum=1, maximum=64,
                         default=1),
        "image": string("Trainer image for this model's runs (cluster only); overrides "
                        "execution.image, e.g. an image with this model's own dependencies.",
                        maxLength=512, pattern=patterns.IMAGE),
        "resources": resources("CPU/memory requests and limits for this model's run pods; "
                               "overrides execution.resources key by key."),
        "training": training("Training settings for this model only, over spec.training and "
                             "the method's settings (typically learningRateScale or "
                             "batchSize for large models).", with_defaults=False),
    },
    required=["name", "source"],
    rules=[
        rule("!has(self.checkpointOf) || self.checkpointOf != self.name",
             "models[].checkpointOf must name another model, not the model itself",
             message_expression="'models[].checkpointOf must name another model, not the "
                                "model itself (' + self.name + ')'",
             field_path=".checkpointOf"),
        rule("self.source == oldSelf.source",
             "models[].source is immutable: a different checkpoint under the same name would "
             "mix incomparable results; add a model with a new name instead"),
        rule("!has(self.revision) || !self.source.startsWith('toy:')",
             "models[].revision is for Hugging Face model ids; a toy: model names its checkpoint "
             "as toy:<name>@<tokens>", field_path=".revision"),
        rule("has(self.revision) == has(oldSelf.revision) && (!has(self.revision) || "
             "self.revision == oldSelf.revision)",
             "models[].revision is immutable: a different checkpoint under the same name would "
             "mix incomparable results; add a model with a new name instead"),
        rule("has(self.parameters) == has(oldSelf.parameters) && (!has(self.parameters) || "
             "self.parameters == oldSelf.parameters)",
             "models[].parameters is immutable: it is the X value of finished runs; add a "
             "model with a new name instead"),
        rule("has(self.pretrainingTokens) == has(oldSelf.pretrainingTokens) && "
             "(!has(self.pretrainingTokens) || self.pretrainingTokens == "
             "oldSelf.pretrainingTokens)",
             "models[].pretrainingTokens is immutable: it is the X value of finished runs; "
             "add a model with a new name instead"),
        rule("has(self.checkpointOf) == has(oldSelf.checkpointOf) && (!has(self.checkpointOf) "
             "|| self.checkpointOf == oldSelf.checkpointOf)",
             "models[].checkpointOf is immutable: it decides which factor finished runs "
             "belong to; add a model with a new name instead"),
        rule("has(self.training) == has(oldSelf.training) && (!has(self.training) || "
             "self.training == oldSelf.training)",
             "models[].training is immutable: finished runs were trained with the old "
             "settings; create a new ScalingStudy instead"),
    ],
)

PET_SIZES_DESC = ("PET sizes to sweep: LoRA ranks for lora, soft-prompt lengths for prompt "
                  "(the X of the PET-size factor). Required for lora and prompt; not allowed "
                  "for fmt.")

METHOD = obj(
    "One finetuning method: fmt (full-model tuning), lora, or prompt (soft-prompt tuning).",
    {
        "name": string("The method.", enum=["fmt", "lora", "prompt"]),
        "sizes": array(PET_SIZES_DESC, integer("A LoRA rank or prompt length.", minimum=1,
                                               maximum=MAX_PET_SIZE),
                       minItems=1, maxItems=MAX_PET_SIZES, **SET),
        "defaultSize": integer("The PET size used on every model for the model-size and "
                               "pretraining-data factors. Default: the first of sizes.",
                               minimum=1, maximum=MAX_PET_SIZE),
        "sizeSweepModels": array(
            "Models on which the other sizes are run (the paper sweeps PET sizes on one "
            "model only). Default: every model runs every size.",
            string("A model name from spec.models.", pattern=DNS_LABEL, maxLength=30),
            maxItems=MAX_MODELS, **{"x-kubernetes-list-type": "set"}),
        "dataSizes": array(
            "Finetuning data sizes for this method instead of spec.dataSizes (the paper uses "
            "larger D_f for fmt than for PET).",
            integer("Number of finetuning examples.", minimum=1),
            minItems=1, maxItems=MAX_DATA_SIZES, **SET),
        "loraTargets": array(
            "lora only: module names LoRA adapts, matched as peft does (a dotted name suffix); "
            "`all-linear` = every linear layer of the decoder blocks, `peft-default` = peft's "
            "per-architecture list (attention only). A list may name layers of several "
            "architectures; one that matches no layer of a model is rejected. Default: "
            "all-linear — attention and feed-forward, as the paper (§3.3).",
            string("A module name suffix (q_proj, query_key_value), all-linear or "
                   "peft-default."),
            maxItems=32),
        "loraAlpha": number("lora only: LoRA scaling alpha. Default: twice the rank.",
                            exclusiveMinimum=True, minimum=0),
        "loraDropout": number("lora only: dropout on the LoRA input path.", minimum=0,
                              maximum=0.99),
        "training": training("Training settings for this method, over spec.training "
                             "(e.g. its learning rate and batch size).", with_defaults=False),
    },
    required=["name"],
    rules=[
        rule("self.name != 'fmt' || !has(self.sizes)",
             "methods[name=fmt].sizes is not allowed: PET sizes (LoRA ranks, prompt lengths) "
             "apply only to lora and prompt; remove sizes from the fmt entry",
             field_path=".sizes"),
        rule("self.name == 'fmt' || has(self.sizes)",
             "methods[].sizes is required for lora and prompt: list LoRA ranks or prompt "
             "lengths, e.g. sizes: [4]"),
        rule("!has(self.defaultSize) || (has(self.sizes) && self.defaultSize in self.sizes)",
             "methods[].defaultSize must be one of methods[].sizes: add it to sizes or "
             "change it", field_path=".defaultSize"),
        rule("!has(self.sizeSweepModels) || self.name != 'fmt'",
             "methods[name=fmt].sizeSweepModels is not allowed: fmt has no PET sizes",
             field_path=".sizeSweepModels"),
        rule("self.name == 'lora' || (!has(self.loraTargets) && !has(self.loraAlpha) && "
             "!has(self.loraDropout))",
             "methods[].loraTargets, loraAlpha and loraDropout apply only to lora: remove them "
             "from this method"),
        rule("has(self.training) == has(oldSelf.training) && (!has(self.training) || "
             "self.training == oldSelf.training)",
             "methods[].training is immutable: finished runs were trained with the old "
             "settings; create a new ScalingStudy instead"),
        rule("(has(self.defaultSize) ? self.defaultSize : (has(self.sizes) ? self.sizes[0] : "
             "0)) == (has(oldSelf.defaultSize) ? oldSelf.defaultSize : (has(oldSelf.sizes) ? "
             "oldSelf.sizes[0] : 0))",
             "methods[].defaultSize (or the first of sizes) is immutable: it decides which "
             "finished runs form the model-size factor; append new sizes at the end instead"),
    ],
)

EVALUATION = obj(
    "How runs are evaluated. The fitted quantity is always the test loss (per-token NLL in "
    "nats) at the checkpoint with the best dev loss. Immutable after creation.",
    {
        "generation": obj(
            "Greedy-decoding quality metrics on (a sample of) the test set (paper Figs. 7-9).",
            {
                "metrics": array("Metrics to compute; empty for none.",
                                 string("A metric: bleu (sacrebleu) or rougeL.",
                                        enum=["bleu", "rougeL"]),
                                 maxItems=2, default=[]),
                "maxExamples": integer("Test examples decoded (decoding is slow; the loss "
                                       "still uses the whole test set).", minimum=1,
                                       default=200),
                "maxNewTokens": integer("Longest generated output, in tokens.", minimum=1,
                                        default=64),
                "bleuTokenizer": string(
                    "How sacreBLEU splits text into words for BLEU: 13a (its default, for "
                    "languages written with spaces), intl (Unicode punctuation), zh (Chinese "
                    "characters), char, none, or flores101/flores200 (SentencePiece; needs the "
                    "sentencepiece package and sacreBLEU's model file in the image).",
                    enum=["13a", "intl", "zh", "char", "none", "flores101", "flores200"],
                    default="13a"),
            }, default={}),
        "zeroShot": array("Zero-shot sets to evaluate on: names of task.zeroShotSets, or "
                          "built-in tasks of the trainer (e.g. toy-fr-de), whose test split "
                          "is used.",
                          string("A zero-shot set name.", pattern=DNS_LABEL, maxLength=63),
                          maxItems=16, default=[], **{"x-kubernetes-list-type": "set"}),
        "devExamples": integer("Dev examples used for checkpoint selection (all when "
                               "omitted).", minimum=1),
        "testExamples": integer("Test examples used for the test loss (all when omitted).",
                                minimum=1),
    },
    rules=[rule("self == oldSelf",
                "spec.evaluation is immutable: finished runs were measured the old way; "
                "create a new ScalingStudy instead")],
    default={},
)

HOLDOUT_AXIS = (r"^(largest|none|[0-9]+(\.[0-9]*)?([eE][+]?[0-9]+)?"
                r"(/[0-9]+(\.[0-9]*)?([eE][+]?[0-9]+)?)*)$")
FACTOR_NAMES = ["modelSize", "pretrainingTokens", "petSize"]


def holdout_axis(what: str, **extra):
    return string(f"Held-out values of {what}: largest (the largest value, when there are at "
                  "least two), none, or values separated by '/', e.g. 209e9/283e9.",
                  pattern=HOLDOUT_AXIS, maxLength=256, **extra)


def holdout_pair(description):
    return obj(description, {"x": holdout_axis("the factor's X"),
                             "d": holdout_axis("the data size D_f")})


HELD_OUT = obj(
    "Which runs are held out of the fit to measure extrapolation (Δ_held-out), by value, per "
    "factor (paper §2.1 item 4): a run is held out when its X or its D_f is a held-out value "
    "of its factor. The paper holds out the largest model, PET size and data size, and the "
    "second-largest pretraining checkpoint (set factors.pretrainingTokens.x to its tokens).",
    {
        "x": holdout_axis("X, for every factor", default="largest"),
        "d": holdout_axis("D_f, for every factor", default="largest"),
        "factors": obj("Per-factor overrides of x and d.", {
            "modelSize": holdout_pair("Held-out values for the model-size factor."),
            "pretrainingTokens": holdout_pair("Held-out values for the pretraining-data "
                                              "factor."),
            "petSize": holdout_pair("Held-out values for the PET-size factor."),
        }),
    },
    default={},
)

LAW = obj(
    "How the scaling law L = A·X^-α·D_f^-β + E is fitted (paper Eq. 1-2; the engine is "
    "ftscale.law). Mutable: changing it only re-runs the fit.",
    {
        "forms": array("Law forms to fit and compare: multiplicative (the paper's Eq. 1), "
                       "additive (A·X^-α + B·D_f^-β + E) and single (A·D_f^-β + E per X "
                       "value, the paper's Fig. 1).",
                       string("A law form.", enum=["multiplicative", "additive", "single"]),
                       minItems=1, maxItems=3, default=["multiplicative", "additive"]),
        "factors": array("Which X factors to fit: modelSize (X = non-embedding parameters), "
                         "pretrainingTokens (X = tokens; needs checkpointOf models) and "
                         "petSize (X = LoRA rank / prompt length). Factors without two "
                         "distinct X values are skipped.",
                         string("A factor.", enum=FACTOR_NAMES),
                         minItems=1, maxItems=3, default=list(FACTOR_NAMES)),
        "stage1Factors": array("Factors pooled in stage 1, which fits the shared β and E "
                               "(paper §2.1 item 3). Default: modelSize and pretrainingTokens, "
                               "those present; PET size is fitted in stage 2 only.",
                               string("A factor.", enum=FACTOR_NAMES), maxItems=3),
        "residual": string("Residual of the Huber objective: raw (L̂ - L, as the paper's Eq. 2) "
                           "or log (log L̂ - log L, as Chinchilla).", enum=["raw", "log"],
                           default="raw"),
        "huberDelta": number("δ of the Huber loss (paper: 1e-3).", exclusiveMinimum=True,
                             minimum=0, default=0.001),
        "heldOut": HELD_OUT,
        "bootstrap": integer("Bootstrap resamples (runs resampled with replacement) for "
                             "intervals; 0 disables intervals.", minimum=0, maximum=10000,
                             default=200),
        "confidenceLevel": number("Central mass of the bootstrap intervals.",
                                  exclusiveMinimum=True, minimum=0, exclusiveMaximum=True,
                                  maximum=1, default=0.95),
        "seed": integer("Random seed of the bootstrap.", minimum=0, default=0),
        "optimizer": string("How the fit finds its start: varpro (variable projection over a "
                            "dense exponent grid) or grid (Chinchilla-style multi-start "
                            "L-BFGS-B).", enum=["varpro", "grid"], default="varpro"),
    },
    default={},
)

EXECUTION = obj(
    "Where and how runs execute. On a cluster each run is a batch/v1 Job; locally "
    "(`ftscale run`) a subprocess. Mutable: it never changes results.",
    {
        "image": string("Trainer container image (cluster only). Default: the one the operator "
                        "was installed with.", maxLength=512, pattern=patterns.IMAGE),
        "imagePullPolicy": string("Image pull policy of run pods.",
                                  enum=["Always", "IfNotPresent", "Never"]),
        "command": array("The trainer's command, for a trainer of your own that honours the "
                         "run contract (docs/run-contract.md): it is started with "
                         "`--config FILE [--output DIR] [--metrics-port PORT]` appended (on a "
                         "cluster --output only with a results volume). Default: "
                         "[python, -m, ftscale_trainer]. Locally the same command runs as a "
                         "subprocess.", string("One argument.", maxLength=1024),
                         minItems=1, maxItems=32),
        "gpusPerRun": integer("nvidia.com/gpu per run pod unless the model sets gpus. "
                              "0 runs on CPU.", minimum=0, maximum=64, default=0),
        # Read by ftscale.costplan (tests/unit/test_costplan.py keeps the enum equal to its
        # GPU_TYPES); no defaults here, so an absent field means "not said" to the memory check.
        "gpu": obj("The GPU model run pods get, for the cost plan (`ftscale plan`: GPU-hours "
                   "and memory per GPU). Omitted: priced on h100, and memory is checked only "
                   "when gpuMemoryGiB is set.", {
            "type": string("GPU model: a100 (80 GB), a100-40gb, h100 (SXM), h200, l4, or "
                           "other (then set peakTFLOPs and gpuMemoryGiB).",
                           enum=["a100", "a100-40gb", "h100", "h200", "l4", "other"]),
            "peakTFLOPs": number("Dense bf16 peak TFLOP/s of one GPU. Default by type: a100 "
                                 "312, h100 989, h200 989, l4 121.", exclusiveMinimum=True,
                                 minimum=0),
            "mfu": number("Model FLOPs utilisation the plan assumes (achieved / peak). Default "
                          "0.35 (docs/study.md, Cost plan).", exclusiveMinimum=True, minimum=0,
                          maximum=1),
        }),
        "gpuMemoryGiB": number("Memory of one GPU in GiB (default by execution.gpu.type). "
                               "Runs whose memory estimate exceeds it with the most frugal "
                               "settings are rejected before any Job starts.",
                               exclusiveMinimum=True, minimum=0),
        "resources": resources("CPU/memory requests and limits of run pods (models[].resources "
                               "overrides key by key)."),
        "maxParallelRuns": integer("At most this many runs at once (Jobs not yet finished). "
                                   "With Kueue, quota decides what actually runs.",
                                   minimum=1, maximum=1000, default=8),
        "maxFailedRuns": integer("Stop creating new runs once this many runs have failed; the "
                                 "study is then Failed. -1 never stops.", minimum=-1,
                                 default=-1),
        "backoffLimit": integer("Retries of a run pod that fails for a retriable reason "
                                "(preemption and node loss never count).", minimum=0,
                                maximum=20, default=2),
        "activeDeadlineSeconds": integer("Kill a run after this many seconds "
                                         "(DeadlineExceeded). Omit for no limit.", minimum=1),
        "ttlSecondsAfterFinished": integer("Delete finished run Jobs after this many seconds "
                                           "(their results stay in status). Omit to keep them.",
                                           minimum=0),
        "queueName": string("Kueue LocalQueue for run Jobs (sets the "
                            "kueue.x-k8s.io/queue-name label; Jobs start suspended and Kueue "
                            "admits them).", maxLength=63, pattern=patterns.DNS_SUBDOMAIN),
        "priorityClassName": string("PriorityClass of run pods.", maxLength=253,
                                    pattern=patterns.DNS_SUBDOMAIN),
        "nodeSelector": label_map("Node labels run pods must match."),
        "tolerations": array("Tolerations of run pods (e.g. for tainted GPU nodes).",
                             toleration(), maxItems=32),
        "serviceAccountName": string("ServiceAccount of run pods; its token is never "
                                     "mounted (runs need no API access).", maxLength=253,
                                     pattern=patterns.DNS_SUBDOMAIN),
        "volumes": obj("Volumes mounted into run pods.", {
            "models": volume("Base checkpoints (models[].source paths are relative to it).",
                             "/models"),
            "data": volume("Custom task data (task.data paths are relative to it).", "/data"),
            "results": volume("Where full results (with loss curves) are written, one folder "
                              "per study; without it only compact results are kept.",
                              "/results"),
        }),
        "modelCache": obj("Download hub models into this PersistentVolumeClaim before their "
                          "runs start: one prefetch Job per distinct models[].source and "
                          "revision (huggingface_hub.snapshot_download), which needs the hub "
                          "reachable from its pod; run pods then mount the claim read-only and "
                          "read the model offline. Sources of the form org/name are then hub "
                          "ids, not folders of the models volume. Cluster only "
                          "(docs/cluster-install.md, \"Hub models and revisions\").", {
            "claimName": string("PersistentVolumeClaim in the study's namespace (ReadWriteMany "
                                "when runs on several nodes read it).", minLength=1,
                                maxLength=253, pattern=patterns.DNS_SUBDOMAIN),
            "subPath": string("Sub-directory of the volume that holds the cache."),
        }, required=["claimName"]),
        "hfTokenSecret": obj("A Secret with a Hugging Face token, for gated or private models: "
                             "prefetch pods get it as HF_TOKEN (run pods never see it).", {
            "name": string("Secret in the study's namespace.", minLength=1, maxLength=253,
                           pattern=patterns.DNS_SUBDOMAIN),
            "key": string("Key of the token in the Secret.", default="HF_TOKEN", minLength=1,
                          maxLength=253, pattern=r"^[-._a-zA-Z0-9]+$"),
        }, required=["name"]),
        "labels": label_map("Extra labels on run Jobs and pods (e.g. for cost allocation)."),
        "save": string("What runs keep of their selected weights, under the run's results "
                       "folder: `adapter` — LoRA and prompt adapters in peft's save_pretrained "
                       "layout (fmt runs save nothing); `model` — full transformers checkpoints "
                       "(fmt, and LoRA merged into the weights; prompt runs keep their adapter); "
                       "`none`. Default: adapter.", enum=["none", "adapter", "model"]),
    },
    default={},
)

# spec.design: read by ftscale.design.DesignSettings (docs/study.md, "Adaptive design").
DESIGN_TARGET = obj(
    "What the study should find out (docs/law.md, \"Adaptive design\"). extrapolation: "
    "the test loss of each method at one model size and data size; critical: the critical "
    "data size where two methods' laws cross at one model size.", {
        "kind": string("extrapolation or critical.", enum=["extrapolation", "critical"],
                       default="extrapolation"),
        "methods": array("The methods the target is about (default: every method of "
                         "spec.methods; critical: exactly two).",
                         string("A method of spec.methods.", enum=["fmt", "lora", "prompt"]),
                         minItems=1, maxItems=3, **SET),
        "model": string("The model size X of the target: a model of spec.models (default: "
                        "the largest).", pattern=DNS_LABEL, maxLength=30),
        "parameters": number("The model size X of the target in non-embedding parameters, "
                             "instead of model: a size beyond the grid (e.g. 7e9).",
                             exclusiveMinimum=True, minimum=0),
        "dataSize": integer("extrapolation only: the data size D of the target (default: "
                            "each method's largest data size).", minimum=1),
    # The default names its kind: the API server checks a default against the rules, which
    # read self.kind (defaults inside a default are not applied).
    }, default={"kind": "extrapolation"}, rules=[
        rule("self.kind != 'critical' || (has(self.methods) && self.methods.size() == 2)",
             "spec.design.target of kind critical names exactly two methods in methods (the "
             "pair whose laws cross)"),
        rule("!has(self.model) || !has(self.parameters)",
             "spec.design.target sets model or parameters, not both"),
        rule("self.kind == 'extrapolation' || !has(self.dataSize)",
             "spec.design.target.dataSize is for kind extrapolation (a critical target finds "
             "the data size)", field_path=".dataSize"),
    ])
DESIGN = obj(
    "How runs are chosen (docs/study.md, \"Adaptive design\"). grid: every run. adaptive: a "
    "seed design of a few runs per method, then, after each finished run, the runs that most "
    "narrow the target's interval per estimated GPU-hour, until stopWhen holds; the runs "
    "left are not needed (not failed). Runs outside the target (other methods, other PET "
    "sizes) run as in the grid. Mutable.", {
        "strategy": string("grid or adaptive.", enum=["grid", "adaptive"], default="grid"),
        "target": DESIGN_TARGET,
        "stopWhen": obj("When the adaptive design stops choosing runs (and the budget, "
                        "spec.budget, stops it too). Omitted: it runs the whole grid, best "
                        "runs first.", {
            "halfWidth": number("Stop once the target's 95% interval half-width is at most "
                                "this: nats for extrapolation (the widest method), natural "
                                "log of D_c for critical.", exclusiveMinimum=True, minimum=0),
            "maxRuns": integer("Stop once this many runs of the design have started.",
                               minimum=1),
        }),
        "batchSize": integer("At most this many chosen runs under way at once (each is chosen "
                             "from the fit of the runs before it; the seed design starts at "
                             "once).", minimum=1, maximum=1000, default=4),
        "lossNoise": number("Run-to-run standard deviation of the test loss in nats (e.g. "
                            "from seeds): interval widths scale with it.",
                            exclusiveMinimum=True, minimum=0, default=0.01),
    })

# Parts of spec-level rules that the rule and its message expression share.
_DESIGN_METHODS = ("!has(self.design) || !has(self.design.target) || "
                   "!has(self.design.target.methods) || self.design.target.methods.all(n, "
                   "self.methods.exists(m, m.name == n))")
_DESIGN_MODEL = ("!has(self.design) || !has(self.design.target) || "
                 "!has(self.design.target.model) || self.models.exists(m, m.name == "
                 "self.design.target.model && !has(m.checkpointOf))")
_CHECKPOINT_OF_ONE = ("!has(m.checkpointOf) || self.models.exists(b, b.name == m.checkpointOf "
                      "&& !has(b.checkpointOf))")
_CHECKPOINT_OF_KNOWN = "self.models.all(m, " + _CHECKPOINT_OF_ONE + ")"
_CHAIN_TOKENS_ONE = ("m.source.startsWith('toy:') || has(m.pretrainingTokens) || "
                     "!(has(m.checkpointOf) || self.models.exists(c, has(c.checkpointOf) && "
                     "c.checkpointOf == m.name))")
_GRID_SIZE = ("self.methods.map(m, (has(m.dataSizes) ? m.dataSizes.size() : "
              "self.dataSizes.size()) * (!has(m.sizes) ? self.models.size() : "
              "(has(m.sizeSweepModels) ? self.models.size() + (m.sizes.size() - 1) * "
              "m.sizeSweepModels.size() : self.models.size() * m.sizes.size()))).sum() * "
              "self.seeds.size()")
_ZERO_SHOT_ONE = ("z in [" + ", ".join(f"'{t}'" for t in BUILTIN_TASKS) + "] || "
                  "(has(self.task.zeroShotSets) && self.task.zeroShotSets.exists(s, s.name == "
                  "z))")
_ZERO_SHOT_KNOWN = ("!has(self.evaluation) || !has(self.evaluation.zeroShot) || "
                    f"self.evaluation.zeroShot.all(z, {_ZERO_SHOT_ONE})")

SPEC = obj(
    "The scaling study: every combination of model × method (× PET size) × data size × seed "
    "is one finetuning run; the fit then relates their test losses by L = A·X^-α·D_f^-β + E.",
    {
        "task": TASK,
        "models": array("Base models. Each model name is part of run identities.", MODEL,
                        maxItems=MAX_MODELS,
                        **{"x-kubernetes-list-type": "map",
                           "x-kubernetes-list-map-keys": ["name"]}),
        "methods": array("Finetuning methods (each name at most once).", METHOD,
                         maxItems=3, **{"x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"]}),
        "dataSizes": array("Finetuning data sizes D_f (examples), unless a method sets its own.",
                           integer("Number of finetuning examples.", minimum=1),
                           maxItems=MAX_DATA_SIZES, **SET),
        "seeds": array("Seeds; each picks a different random data subset and initialisation "
                       "(the paper averages 3). The fit uses the mean over seeds.",
                       integer("A seed.", minimum=0), minItems=1, maxItems=MAX_SEEDS,
                       default=[0], **SET),
        "training": training("Training settings shared by all runs (omitted fields take the "
                             "trainer's per-method defaults). Immutable after creation.",
                             with_defaults=True),
        "evaluation": EVALUATION,
        "law": LAW,
        "execution": EXECUTION,
        "budget": obj("A GPU-hour budget (docs/study.md, \"Budget\"). Runs start in grid order "
                      "while the GPU-hours spent (wall time × GPUs of finished runs) plus the "
                      "cost plan's estimates of the runs under way and of the next run stay "
                      "within it; then no run starts (condition BudgetExhausted) and the study "
                      "fits what finished. Mutable: raise it to run the rest.", {
                          "gpuHours": number("The budget in GPU-hours.", minimum=0),
                      }, required=["gpuHours"]),
        "design": DESIGN,
    },
    required=["task", "models", "methods", "dataSizes"],
    rules=[
        rule("self.models.size() > 0",
             "spec.models needs at least one model: add an entry with a name and a source",
             field_path=".models"),
        rule("self.methods.size() > 0",
             "spec.methods needs at least one method: add e.g. {name: fmt} or "
             "{name: lora, sizes: [4]}", field_path=".methods"),
        rule("self.dataSizes.size() > 0",
             "spec.dataSizes needs at least one data size (number of finetuning examples)",
             field_path=".dataSizes"),
        rule(_CHECKPOINT_OF_KNOWN,
             "spec.models[].checkpointOf must name another model of spec.models that is not "
             "itself a checkpoint: add that model or fix the name", field_path=".models"),
        rule(f"self.models.all(m, {_CHAIN_TOKENS_ONE})",
             "spec.models[].pretrainingTokens is required for every model of a checkpointOf "
             "chain that is not a toy: model: it is the X of the pretraining-data factor",
             field_path=".models"),
        rule("self.methods.all(m, !has(m.sizeSweepModels) || m.sizeSweepModels.all(n, "
             "self.models.exists(x, x.name == n)))",
             "spec.methods[].sizeSweepModels must name models of spec.models: fix the name or "
             "add the model", field_path=".methods"),
        rule(f"{_GRID_SIZE} <= {MAX_RUNS}",
             f"spec: the grid has more than {MAX_RUNS} runs (models × methods × sizes × "
             "dataSizes × seeds): split the study, or use methods[].sizeSweepModels / "
             "methods[].dataSizes to prune it"),
        rule(_ZERO_SHOT_KNOWN,
             "spec.evaluation.zeroShot must name built-in tasks ("
             + ", ".join(BUILTIN_TASKS) + ") or sets of spec.task.zeroShotSets",
             message_expression="self.evaluation.zeroShot"
                                f".filter(z, !({_ZERO_SHOT_ONE}))[0] + ' is neither a built-in "
                                f"task ({', '.join(BUILTIN_TASKS)}) nor a set of "
                                "spec.task.zeroShotSets: add it there with a path, or fix the "
                                "name'",
             field_path=".evaluation.zeroShot"),
        *[rule(text, f"{field} leaves fewer than 2 data sizes of a method to fit (the fit needs "
                     "them to find beta): hold out fewer data sizes", field_path=path)
          for text, field, path in held_out_rules()],
        rule(_DESIGN_METHODS,
             "spec.design.target.methods must name methods of spec.methods",
             field_path=".design.target.methods"),
        rule(_DESIGN_MODEL,
             "spec.design.target.model must name a model of spec.models that is not a "
             "checkpoint (checkpointOf)", field_path=".design.target.model"),
        rule("self.training == oldSelf.training",
             "spec.training is immutable: finished runs were trained with the old settings; "
             "create a new ScalingStudy instead", field_path=".training"),
    ],
)

CONDITION = obj("A condition of the study (Progressing, Succeeded, Failed, Fitted, Degraded).", {
    "type": string("Condition type."),
    "status": string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
    "reason": string("CamelCase machine-readable reason."),
    "message": string("Human-readable detail."),
    "observedGeneration": integer("The .metadata.generation the condition was set for."),
    "lastTransitionTime": string("When the status last changed.", format="date-time"),
}, required=["type", "status"])

_LEAF = {"string": string, "integer": integer, "number": number}
RESULT_ENTRY = obj("Compact result of one failed run (ftscale.api.status).", {
    f.name: (string(f.description, enum=PHASE_ENUM) if f.name == "phase"
             else _LEAF[f.type](f.description))
    for f in ENTRY_FIELDS}, required=[f.name for f in ENTRY_FIELDS if f.required])

# status.fit: ftscale.api.fit_summary.fit_status() writes it; every field is named so that
# `kubectl describe` and `kubectl get -o yaml` read as a document (docs/operator.md).
_INTERVAL = array("[low, high] of the bootstrap interval (4 significant digits).",
                  number("A bound."), maxItems=2)
FIT_LAW = obj("One fitted law of one method and factor.", {
    "method": string("Finetuning method."),
    "factor": string("Scaling factor X: model_size, pretrain_tokens or pet_size."),
    "form": string("Law form: multiplicative (A·X^-α·D^-β + E) or additive."),
    "params": obj("Fitted parameters (10 significant digits).", {
        p: number(f"Parameter {p}.") for p in ("A", "E", "alpha", "beta", "B")}),
    "intervals": obj("Bootstrap intervals per parameter (the study's confidence level).", {
        p: _INTERVAL for p in ("A", "E", "alpha", "beta", "B")}),
    "deltaFit": number("Mean absolute deviation on the fitting points (nats)."),
    "deltaHeldOut": number("Mean absolute deviation on the held-out points (nats)."),
    "converged": boolean("Whether the optimiser converged."),
    "flags": array("Diagnostic codes of a fit not to be trusted as is (docs/law.md).",
                   string("A diagnostic code, e.g. AtBound."), maxItems=32),
})
FIT_STATUS = obj(
    "The fit of the current results (ftscale.api.fit_summary): the fitted laws with intervals, "
    "Δ_fit and Δ_held-out, critical data sizes, skipped factors. fit.json on the results "
    "volume has everything unrounded.", {
        "job": string("The fit Job that produced it."),
        "inputDigest": string("Digest of the fit's input (law settings, runs and losses)."),
        "phase": string("Succeeded or Failed.",
                        enum=[phases.FIT_SUCCEEDED_PHASE, phases.FIT_FAILED_PHASE]),
        "reason": string("Why the fit failed (CamelCase)."),
        "message": string("What the fit found, or why it failed.",
                          maxLength=4096),
        "schema": string("The summary's schema, ftscale.io/fit-summary/v2."),
        "laws": array("Fitted laws.", FIT_LAW, maxItems=256),
        "critical": array("Critical data sizes: where two methods' multiplicative laws cross.",
                          obj("Crossings of two methods at one X.", {
                              "methods": array("The two methods.", string("A method."),
                                               maxItems=2),
                              "factor": string("The factor X."),
                              "x": number("The X value."),
                              "dataSizes": array("Crossing data sizes (empty: none in range).",
                                                 number("A data size."), maxItems=16),
                          }), maxItems=1024),
        "betterForm": string("The law form with the lower mean held-out error."),
        "skipped": array("Factors the results cannot support, left out with the reason.",
                         obj("A skipped factor.", {
                             "method": string("Method."), "factor": string("Factor."),
                             "reason": string("Why it was not fitted.", maxLength=1024)}),
                         maxItems=64),
        "dropped": array("Detail left out to keep the summary under 3 KB.",
                         string("What was left out."), maxItems=8),
    })

STATUS = obj("Observed state, rebuilt by the operator from the run Jobs on every pass.", {
    "observedGeneration": integer("The .metadata.generation this status describes."),
    "phase": string("Summary: Pending, Running, Fitting, Fitted, Failed.",
                    enum=list(phases.STUDY_PHASES)),
    "progress": string("Terminal runs / all runs, e.g. 12/30 (for kubectl get)."),
    "runsTotal": integer("Runs in the grid."),
    "runsSucceeded": integer("Runs that finished with a result."),
    "runsFailed": integer("Runs that ended Failed."),
    "runsRunning": integer("Runs whose pod is running."),
    "runsQueued": integer("Runs created but not admitted or scheduled yet (e.g. by Kueue)."),
    "runsPending": integer("Runs not created yet (parallelism limit, budget)."),
    "gpuHoursSpent": number("GPU-hours the finished runs held (wall time × GPUs)."),
    "design": obj("The adaptive design's state (spec.design.strategy adaptive; docs/study.md, "
                  "\"Adaptive design\"). Each chosen run's Job carries why in its "
                  "ftscale.io/design-reason annotation and a RunChosen Event.", {
                      "strategy": string("adaptive."),
                      "done": boolean("The stop rule holds: the runs left are not needed."),
                      "message": string("What the design estimates and how sure it is.",
                                        maxLength=1024),
                      "halfWidth": number("The target's 95% interval half-width now."),
                      "notNeeded": integer("Runs the design left unstarted once done."),
                  }),
    "plan": obj("The cost plan (`ftscale plan`; docs/study.md, \"Cost plan\") before any Job "
                "starts, and the budget's verdict.", {
                    "gpuHours": number("Estimated GPU-hours of every priced run."),
                    "pricedRuns": integer("Runs the cost plan could price (GPU runs of a "
                                          "known size)."),
                    "unpricedRuns": integer("Runs it could not (CPU runs, unknown size)."),
                    "budgetGpuHours": number("spec.budget.gpuHours, when set."),
                    "notStarted": integer("Runs the budget keeps from starting."),
                }),
    # Per-run results are not in the status (its size would grow with the study, and with it
    # the cost of every status write): they are in the `<study>-results-<k>` ConfigMaps
    # (ftscale.api.results_store). Only the newest failures are here, for `kubectl describe`.
    "recentFailures": array(
        f"The newest failed runs (at most {RECENT_FAILURES}), newest first. Every run's result "
        "is in the study's results ConfigMaps (`kubectl get configmaps -l "
        "ftscale.io/component=results,ftscale.io/study=<name>`).", RESULT_ENTRY,
        maxItems=RECENT_FAILURES, **{"x-kubernetes-list-type": "atomic"}),
    "fit": FIT_STATUS,
    "conditions": array("Conditions: Progressing, Succeeded, Failed, Fitted, Degraded.",
                        CONDITION, **{"x-kubernetes-list-type": "map",
                                      "x-kubernetes-list-map-keys": ["type"]}),
})


def crd() -> dict:
    schema = obj(
        "A ScalingStudy runs a finetuning scaling study (Zhang et al., ICLR 2024) and fits "
        "L = A·X^-α·D_f^-β + E to its results.",
        {
            "apiVersion": string("APIVersion of this object: ftscale.io/v1alpha1."),
            "kind": string("Kind of this object: ScalingStudy."),
            "metadata": {"type": "object"},
            "spec": SPEC,
            "status": STATUS,
        },
        required=["spec"],
        rules=[rule(f"self.metadata.name.size() <= {MAX_STUDY_NAME}",
                    f"metadata.name must be at most {MAX_STUDY_NAME} characters: run Job "
                    "names are <study>-<run id> and must fit in 63",
                    message_expression=f"'metadata.name must be at most {MAX_STUDY_NAME} "
                                       "characters (run Job names are <study>-<run id> and "
                                       "must fit in 63): got ' + self.metadata.name"),
               rule(f"self.metadata.name.matches(r'{patterns.DNS_LABEL}')",
                    "metadata.name must be a DNS label (lower-case letters, digits and '-'): "
                    "it names run Jobs and labels, and locally the workdir runs/<name>",
                    message_expression="'metadata.name must be a DNS label (lower-case "
                                       "letters, digits and -): it names run Jobs and labels, "
                                       "and locally the workdir runs/<name>; got ' + "
                                       "self.metadata.name")],
    )
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}",
                     "labels": {"app.kubernetes.io/name": "ftscale",
                                "app.kubernetes.io/component": "crd"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": meta.LIST_KIND, "plural": PLURAL,
                      "singular": meta.SINGULAR, "shortNames": list(meta.SHORT_NAMES),
                      "categories": list(meta.CATEGORIES)},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "Done", "type": "string", "jsonPath": ".status.progress",
                     "description": "Terminal runs / all runs"},
                    {"name": "Running", "type": "integer", "jsonPath": ".status.runsRunning",
                     "description": "Runs whose pod is running"},
                    {"name": "Failed", "type": "integer", "jsonPath": ".status.runsFailed",
                     "description": "Runs that ended Failed"},
                    {"name": "Fitted", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Fitted\")].status",
                     "description": "Whether the scaling law has been fitted"},
                    {"name": "Phase", "type": "string", "jsonPath": ".status.phase",
                     "priority": 1, "description": "Summary phase"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    }


HEADER = """\
# ScalingStudy CustomResourceDefinition (ftscale.io/v1alpha1) — the single source of truth for
# the study spec: the API server, `ftscale run` and the operator validate against it.
# GENERATED by crds/generate.py (shared sub-schemas stay equal); edit that file, then run
#   $(scripts/python-env.sh) crds/generate.py
# Install: kubectl apply --server-side -f crds/scalingstudy.yaml
"""


def render() -> str:
    return HEADER + yaml.safe_dump(crd(), sort_keys=False, width=100, allow_unicode=True)


def main() -> int:
    out = Path(__file__).with_name("scalingstudy.yaml")
    out.write_text(render())
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
