"""The cost plan of a study: training FLOPs, GPU-hours and memory per GPU of every run, before
any run starts (pure and torch-free; docs/study.md, "Cost plan", has the formulas in prose).

Inputs are the validated spec and the runs of `ftscale.grid.expand`; each run's effective
settings (batch size, step and epoch caps, token limits, evaluation sizes, precision) come from
the trainer config the executors would write (`grid.trainer_config` resolved by
`ftscale_trainer.config.TrainConfig`, itself torch-free), so the plan cannot disagree with what
the trainer does about them.

FLOPs (N = non-embedding parameters, T = training tokens; attention's sequence-dependent
FLOPs and the LM head are left out, as in the paper's 6·N·D):

* fmt:    6·N·T  (forward 2N, backward through activations 2N, weight gradients 2N);
* lora:   4·N·T + 6·N_lora·T  (the frozen base is run forward and backward through its
          activations, but computes no weight gradients; the adapter pays all three);
* prompt: 4·N·T, where T also counts the |P| prompt positions in every sequence. The prompt
          vectors are inputs, not a layer: their gradient is the activation gradient at the
          first layer, which the 4·N already pays for.
* gradient checkpointing recomputes the forward pass: +2·(N + N_lora)·T, executed but not
  counted as model FLOPs (so the time goes up, the reported training FLOPs do not);
* evaluation: 2·N per token for the dev loss (every evalInterval steps and at the last step),
  the test loss and each zero-shot set; greedy decoding for generation metrics with a KV cache,
  2·N per prompt and generated token, timed at the larger of that FLOP time and reading every
  weight once per decoding step (decoding a batch is memory-bandwidth bound).

Tokens: the trainer truncates sources and targets to maxSourceTokens / maxTargetTokens (the
trainer's defaults when the task leaves them out), so (source + target) tokens per example is an
upper bound, as is the step count min(maxSteps, ceil(maxEpochs·D_f / batchSize)) when early
stopping is on. Steps × batchSize × tokens-per-example is the training token count.

Memory per GPU (bytes; Adam state and gradients in fp32 for trainable parameters only):

* weights: fmt keeps fp32 master weights, plus a bf16 copy that autocast holds for the
  backward pass under bf16/fp16 (4 + 2 bytes per parameter); lora/prompt load the frozen base in
  bf16 under bf16/fp16 and fp32 otherwise, plus the fp32 adapter;
* gradients 4 and Adam 8 bytes per trainable parameter; data-parallel replicas (DDP) keep
  another 4 bytes per trainable parameter in their communication buckets;
* FSDP (fmt on several GPUs): whether a run shards is the trainer's own rule,
  ftscale_trainer.sharding.choose_sharding — `training.sharding: fsdp` always, `auto` when its
  estimate (ftscale_trainer.memory) of one unsharded process at one example with activation
  checkpointing exceeds the GPU's memory, `none` never — so the plan predicts what the run
  will do. Sharded, weights, gradients and Adam are divided by the GPU count, plus two layers'
  bf16 parameters gathered at a time (the current one and the prefetched next);
* activations: Korthikanti et al. (2022, "Reducing Activation Recomputation in Large Transformer
  Models", eq. 2 with one tensor-parallel rank) 34·s·b·h bytes per layer for 16-bit activations,
  without the 5·a·s²·b attention-score term because the attention kernels (SDPA/flash) do not
  keep the score matrix; twice that in fp32. With gradient checkpointing, each layer keeps only
  its input (2·s·b·h bytes) plus one layer's full activations while it is recomputed. PET methods
  are charged the same activations as fmt: backpropagating into the adapters needs them;
* logits: 8 bytes per token per vocabulary entry (fp32 logits and log-probabilities) when the
  vocabulary is known; otherwise left out (see embeddings below);
* a fixed runtime overhead for the CUDA context, library workspaces and allocator slack.

Model shapes: toy models (`toy:`) have their exact shape (ftscale_trainer.toy.FAMILY); other
models only give `parameters` (X_m, non-embedding), so hidden size and layer count are inferred
assuming the common shape N = 12·L·h² with h = 128·L (Pythia-1B and Llama-7B have it exactly).
Their embeddings (and so the LM head's logits) are unknown and excluded from memory, and every
run says so in its notes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable

from ftscale import grid
from ftscale.grid import PlannedRun

GIB = 1024 ** 3

# ---- GPUs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuType:
    """Datasheet numbers of one GPU model (dense, no sparsity)."""

    name: str
    peak_tflops: float  # bf16/fp16 tensor-core peak
    peak_tflops_fp32: float  # plain fp32 (PyTorch does not use TF32 for matmuls by default)
    memory_gib: float  # what nvidia-smi reports as total memory
    bandwidth_tbs: float  # HBM/GDDR bandwidth, TB/s (bounds greedy decoding)


GPU_TYPES: dict[str, GpuType] = {
    "a100": GpuType("a100", 312.0, 19.5, 80.0, 2.04),  # A100 SXM 80 GB
    "a100-40gb": GpuType("a100-40gb", 312.0, 19.5, 40.0, 1.56),
    "h100": GpuType("h100", 989.0, 67.0, 79.6, 3.35),  # H100 SXM 80 GB
    "h200": GpuType("h200", 989.0, 67.0, 140.4, 4.8),  # same compute as H100, 141 GB HBM3e
    "l4": GpuType("l4", 121.0, 30.3, 22.5, 0.3),
}
OTHER_GPU = "other"  # spec.execution.gpu.type for a GPU not in GPU_TYPES (peakTFLOPs required)
# Priced on when neither the spec nor the command line names a GPU (said in the plan's notes).
DEFAULT_GPU_TYPE = "h100"
# Model FLOPs utilisation. Well-tuned bf16 finetuning of 1B-8B models reaches ~0.35-0.45 of peak
# (NeMo's LoRA on Llama 8B ≈ 0.42, llm-foundry's 7B FSDP ≈ 0.4-0.5 at long sequences); the
# short sequences (≤ 512 tokens) and small batches of finetuning studies sit at the low end.
# Models below ~300M parameters are launch-bound and run lower: their estimates are optimistic.
DEFAULT_MFU = 0.35
# CUDA context (~0.5 GiB), cuBLAS/cuDNN workspaces and caching-allocator slack.
RUNTIME_OVERHEAD_BYTES = 1 * GIB
# ftscale_trainer.evaluate.greedy_decode decodes this many examples at once.
DECODE_BATCH = 64


class CostPlanError(ValueError):
    """The spec asks for a plan that cannot be made (e.g. an unknown GPU type)."""


@dataclass(frozen=True)
class GpuSettings:
    """The GPU every GPU run is priced on, and where its numbers came from."""

    type: str
    peak_tflops: float  # for bf16/fp16 runs
    peak_tflops_fp32: float  # for fp32 runs
    mfu: float
    memory_gib: float | None  # per GPU; None = unknown (the memory check is skipped)
    bandwidth_tbs: float | None  # None = unknown (decoding is timed by FLOPs only)
    source: str  # "spec", "command line" or "default"

    def peak_for(self, precision: str) -> float:
        return self.peak_tflops_fp32 if precision == "fp32" else self.peak_tflops


def gpu_settings(spec: dict[str, Any], gpu_type: str | None = None,
                 mfu: float | None = None) -> GpuSettings:
    """The GPU of the plan: spec.execution.gpu and .gpuMemoryGiB, overridden by `gpu_type` and
    `mfu` (the command line). An overriding type replaces the spec's peak and memory too.
    Raises CostPlanError for an unknown type without peakTFLOPs, or an MFU outside (0, 1]."""
    execution = spec.get("execution", {})
    declared = dict(execution.get("gpu") or {})
    memory = execution.get("gpuMemoryGiB")
    source = "spec" if declared else "default"
    if gpu_type is not None:
        declared = {"type": gpu_type, **({"mfu": declared["mfu"]} if "mfu" in declared else {})}
        memory, source = None, "command line"
    name = declared.get("type", DEFAULT_GPU_TYPE).lower()
    known = GPU_TYPES.get(name)
    if known is None and "peakTFLOPs" not in declared:
        raise CostPlanError(
            f"GPU type {name!r} has no built-in numbers ({', '.join(GPU_TYPES)} have): set "
            f"execution.gpu.peakTFLOPs (its dense bf16 peak) and execution.gpuMemoryGiB")
    peak = float(declared.get("peakTFLOPs", known.peak_tflops if known else 0.0))
    peak32 = known.peak_tflops_fp32 if known and "peakTFLOPs" not in declared else peak
    chosen_mfu = float(mfu if mfu is not None else declared.get("mfu", DEFAULT_MFU))
    if not 0 < chosen_mfu <= 1:
        raise CostPlanError(f"MFU must be in (0, 1], got {chosen_mfu}")
    if not peak > 0:
        raise CostPlanError(f"peakTFLOPs must be > 0, got {peak}")
    if memory is None and known is not None:
        memory = known.memory_gib
    return GpuSettings(type=name, peak_tflops=peak, peak_tflops_fp32=peak32, mfu=chosen_mfu,
                       memory_gib=None if memory is None else float(memory),
                       bandwidth_tbs=known.bandwidth_tbs if known else None,
                       source="command line" if mfu is not None and source == "spec" else source)


# ---- model shapes -------------------------------------------------------------------------
# Assumed width/depth ratio when only the parameter count is known (Kaplan et al. find loss
# flat over a wide range of it; Pythia-1B, Llama-7B and Llama-13B are at 128, 128 and 128).
ASPECT_RATIO = 128
PARAMS_PER_LAYER_PER_H2 = 12  # 4h² attention + 8h² feed-forward (4h GeLU or 8/3·h SwiGLU)


@dataclass(frozen=True)
class ModelShape:
    non_embedding_params: int  # N, X_m
    hidden_size: int
    layers: int
    intermediate_size: int
    vocab_size: int | None  # None = unknown: embeddings and logits are left out
    exact: bool  # True for a known architecture, False when inferred from N

    @property
    def embedding_params(self) -> int:
        """Tied input/output embedding (the toy family ties them); 0 when unknown."""
        return (self.vocab_size or 0) * self.hidden_size


def shape_from_parameters(params: int) -> ModelShape:
    """The shape a model of `params` non-embedding parameters most likely has: N = 12·L·h²,
    h = ASPECT_RATIO·L, h rounded to a multiple of 64 (GPU-friendly widths). Raises
    CostPlanError for a non-positive count."""
    if params <= 0:
        raise CostPlanError(f"parameters must be positive, got {params}")
    h = (ASPECT_RATIO * params / PARAMS_PER_LAYER_PER_H2) ** (1 / 3)
    h = max(64, int(round(h / 64)) * 64)
    layers = max(1, int(round(params / (PARAMS_PER_LAYER_PER_H2 * h * h))))
    return ModelShape(params, h, layers, (h * 8 // 3 + 7) // 8 * 8, None, exact=False)


def toy_shape(source: str) -> ModelShape | None:
    """The exact shape of a `toy:<name>[@tokens]` model from the family table (torch-free; the
    world need not be built). None when the name is not in the family or the trainer package is
    absent. The formula mirrors ftscale_trainer.tiny_llama.LlamaShape.non_embedding_params."""
    try:
        from ftscale_trainer import toy
    except ImportError:
        return None
    name = source.removeprefix("toy:").partition("@")[0]
    for member, d, layers, _heads, _lr in toy.FAMILY:
        if member == name:
            f = (d * 8 // 3 + 7) // 8 * 8
            per_layer = 4 * d * d + 3 * d * f + 2 * d  # q,k,v,o + SwiGLU + two RMSNorms
            return ModelShape(layers * per_layer + d, d, layers, f, toy.VOCAB_SIZE, exact=True)
    return None


def model_shape(model: dict[str, Any]) -> ModelShape | None:
    """The shape of a spec.models entry: exact for toy models, inferred from `parameters`
    otherwise; None when neither is known (the run's plan then says what to set)."""
    if model["source"].startswith("toy:"):
        shape = toy_shape(model["source"])
        if shape is not None:
            return shape
    if "parameters" in model:
        return shape_from_parameters(int(model["parameters"]))
    return None


# ---- adapters -----------------------------------------------------------------------------
def _lora_inout(target: str, h: int, f: int) -> int:
    """in + out features of one adapted linear layer, by its (Llama or GPT-NeoX) name; an
    unknown name is taken as an h→h projection."""
    return {"q_proj": 2 * h, "k_proj": 2 * h, "v_proj": 2 * h, "o_proj": 2 * h,
            "gate_proj": h + f, "up_proj": h + f, "down_proj": h + f,
            "query_key_value": 4 * h, "dense": 2 * h,
            "dense_h_to_4h": 5 * h, "dense_4h_to_h": 5 * h}.get(target, 2 * h)


LLAMA_ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LLAMA_PEFT_DEFAULT = ("q_proj", "v_proj")


def adapter_params(method: str, size: int | None, shape: ModelShape,
                   lora_targets: Iterable[str] | None = None) -> int:
    """Trainable parameters of a PET adapter: LoRA r·(in + out) per adapted linear layer and
    layer (targets `all-linear` (default) / `peft-default` are read as Llama's layer names),
    a prompt |P|·h; 0 for fmt."""
    if method == grid.FMT or not size:
        return 0
    h, f = shape.hidden_size, shape.intermediate_size
    if method == "prompt":
        return size * h
    targets = list(lora_targets or ["all-linear"])
    names: list[str] = []
    for t in targets:
        names += (list(LLAMA_ALL_LINEAR) if t == "all-linear"
                  else list(LLAMA_PEFT_DEFAULT) if t == "peft-default" else [t])
    return size * shape.layers * sum(_lora_inout(n, h, f) for n in dict.fromkeys(names))


# ---- FLOPs --------------------------------------------------------------------------------
def training_flops(method: str, params: int, adapter: int, tokens: float) -> float:
    """Model FLOPs of training on `tokens` tokens (see the module docstring)."""
    if method == grid.FMT:
        return 6.0 * params * tokens
    # frozen base: forward + backward through activations, no weight-gradient GEMMs
    lora = 6.0 * adapter * tokens if method == "lora" else 0.0
    return 4.0 * params * tokens + lora


def recompute_flops(params: int, adapter: int, tokens: float, method: str) -> float:
    """Extra executed FLOPs of gradient checkpointing: one more forward pass."""
    return 2.0 * (params + (adapter if method == "lora" else 0)) * tokens


def forward_flops(params: int, tokens: float) -> float:
    return 2.0 * params * tokens


def total_steps(max_steps: int, max_epochs: float, data_size: int, batch_size: int) -> int:
    """min(max_steps, ceil(max_epochs·D_f / batch)) — ftscale_trainer.train.total_steps."""
    by_epochs = math.ceil(max_epochs * data_size / batch_size)
    return max(1, min(max_steps, by_epochs))


# ---- memory -------------------------------------------------------------------------------
ACTIVATION_BYTES_PER_SBH = 34  # Korthikanti et al. eq. 2, 16-bit, no attention-score term
CHECKPOINT_BYTES_PER_SBH = 2  # a checkpointed layer keeps its 16-bit input
LOGIT_BYTES_PER_TOKEN_VOCAB = 8  # fp32 logits + fp32 log-probabilities


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU (per process) at given settings."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    overhead: float
    micro_batch_size: int
    gradient_checkpointing: bool
    sharded: bool

    @property
    def total(self) -> float:
        return (self.weights + self.gradients + self.optimizer + self.activations
                + self.logits + self.overhead)

    def breakdown_gib(self) -> str:
        parts = [("weights", self.weights), ("gradients", self.gradients),
                 ("Adam", self.optimizer), ("activations", self.activations),
                 ("logits", self.logits), ("runtime", self.overhead)]
        return ", ".join(f"{name} {value / GIB:.1f}" for name, value in parts if value)


def memory_per_gpu(method: str, shape: ModelShape, adapter: int, *, precision: str,
                   gpus: int, micro_batch: int, seq_len: int, checkpointing: bool,
                   sharded: bool, on_gpu: bool = True) -> MemoryEstimate:
    """Memory of one process of a run (see the module docstring). `precision` is the resolved
    one (fp32, bf16 or fp16); `gpus` the processes of the run; `sharded` FSDP (fmt only)."""
    half = precision in ("bf16", "fp16")
    total_params = shape.non_embedding_params + shape.embedding_params
    processes = max(1, gpus)
    if method == grid.FMT:
        trainable = total_params
        if sharded and processes > 1:
            per_layer = shape.non_embedding_params / shape.layers
            weights = 4.0 * total_params / processes + 2 * 2.0 * per_layer
            grads = 4.0 * trainable / processes
            adam = 8.0 * trainable / processes
        else:
            weights = total_params * (4.0 + (2.0 if half else 0.0))
            grads, adam = 4.0 * trainable, 8.0 * trainable
    else:
        trainable = adapter
        weights = total_params * (2.0 if half else 4.0) + 4.0 * adapter
        grads, adam = 4.0 * trainable, 8.0 * trainable
    if processes > 1 and not sharded:
        grads += 4.0 * trainable  # DDP's gradient buckets
    sbh = float(seq_len) * micro_batch * shape.hidden_size
    act_scale = 1.0 if half else 2.0
    if checkpointing:
        activations = act_scale * sbh * (CHECKPOINT_BYTES_PER_SBH * shape.layers
                                         + ACTIVATION_BYTES_PER_SBH)
    else:
        activations = act_scale * sbh * ACTIVATION_BYTES_PER_SBH * shape.layers
    logits = float(seq_len) * micro_batch * (shape.vocab_size or 0) * LOGIT_BYTES_PER_TOKEN_VOCAB
    return MemoryEstimate(weights, grads, adam, activations, logits,
                          RUNTIME_OVERHEAD_BYTES if on_gpu else 0.0, micro_batch,
                          checkpointing, sharded and processes > 1)


def _divisors_desc(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def _flag(value: Any) -> bool | None:
    """A tri-state setting: True/False when forced, None for auto."""
    text = str(value).lower()
    if text in ("true", "fsdp", "on", "yes"):
        return True
    if text in ("false", "none", "ddp", "off", "no"):
        return False
    return None


def planned_sharding(method: str, setting: str, shape: ModelShape, *, precision: str,
                     processes: int, tokens_per_example: int, capacity_bytes: float | None,
                     on_gpu: bool) -> bool:
    """Whether the trainer will shard the run with FSDP: its own rule
    (ftscale_trainer.sharding.choose_sharding) on its own estimate of whether one unsharded
    process fits (fmt_fits_one_device, from this shape; unknown without a capacity, and then
    `auto` does not shard — as the trainer does without an estimate). `setting` is the config's
    `sharding` (auto, none or fsdp); `processes` the run's GPUs."""
    from ftscale_trainer import memory  # torch-free, like ftscale_trainer.config
    from ftscale_trainer.sharding import choose_sharding, fmt_fits_one_device

    fits = None
    if method == grid.FMT and capacity_bytes is not None:
        dims = memory.ModelDims(
            layers=shape.layers, hidden=shape.hidden_size, intermediate=shape.intermediate_size,
            vocab=shape.vocab_size or 0,
            params=shape.non_embedding_params + shape.embedding_params)
        fits = fmt_fits_one_device(dims, precision, tokens_per_example, capacity_bytes)
    kind, _ = choose_sharding(setting, method, processes, "cuda" if on_gpu else "cpu", fits)
    return kind == "fsdp"


def choose_memory(method: str, shape: ModelShape, adapter: int, *, precision: str, gpus: int,
                  local_batch: int, seq_len: int, micro_batch: int | None,
                  checkpointing: bool | None, sharded: bool,
                  capacity_bytes: float | None, on_gpu: bool = True) -> MemoryEstimate:
    """The settings the run would use and their memory. `sharded` is decided before
    (planned_sharding: the trainer's rule). Fixed settings are kept; automatic ones (None) take
    the fastest choice that fits `capacity_bytes`, in this order of preference: no gradient
    checkpointing before checkpointing, then the largest micro-batch dividing the process's
    share of the batch. With no capacity known, automatic settings stay off and the micro-batch
    is the whole share. When nothing fits, the smallest-memory choice is returned (its total
    exceeds the capacity)."""
    shard_options = [sharded and method == grid.FMT and gpus > 1]
    ckpt_options = [checkpointing] if checkpointing is not None else [False, True]
    micro_options = [micro_batch] if micro_batch else _divisors_desc(local_batch)

    def estimate(shard: bool, ckpt: bool, micro: int) -> MemoryEstimate:
        return memory_per_gpu(method, shape, adapter, precision=precision, gpus=gpus,
                              micro_batch=micro, seq_len=seq_len, checkpointing=ckpt,
                              sharded=shard, on_gpu=on_gpu)

    if capacity_bytes is None:
        return estimate(shard_options[0], ckpt_options[0], micro_options[0])
    for shard in shard_options:
        for ckpt in ckpt_options:
            for micro in micro_options:
                candidate = estimate(shard, ckpt, micro)
                if candidate.total <= capacity_bytes:
                    return candidate
    return estimate(shard_options[-1], ckpt_options[-1], micro_options[-1])


# ---- one run --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """What a run computes, from its resolved trainer config."""

    steps: int
    batch_size: int
    seq_len: int  # training tokens per example: source + target (+ prompt length)
    train_tokens: int
    dev_evaluations: int
    eval_tokens: int  # forward-only tokens of dev, test and zero-shot losses
    generated_examples: int  # decoded for generation metrics (test and zero-shot sets)
    decode_steps: int  # batched greedy-decoding steps
    decode_tokens: int  # prompt + generated positions of all decoded examples


@dataclass(frozen=True)
class RunPlan:
    """The cost and memory of one run. Numbers are None when the model's size is unknown."""

    run_id: str
    model: str
    method: str
    pet_size: int | None
    data_size: int
    seed: int
    gpus: int  # GPUs the run requests (0: a CPU run)
    priced_gpus: int  # GPUs it is priced on (0: not priced)
    precision: str
    params: int | None  # N, non-embedding
    adapter_params: int | None
    workload: Workload | None
    train_flops: float | None  # model FLOPs of training
    recompute_flops: float | None  # extra executed FLOPs of gradient checkpointing
    eval_flops: float | None  # dev/test/zero-shot losses and greedy decoding
    gpu_hours: float | None
    wall_hours: float | None
    memory: MemoryEstimate | None
    fits: bool | None  # None: no GPU memory to compare with
    notes: tuple[str, ...] = ()

    @property
    def total_flops(self) -> float | None:
        if self.train_flops is None:
            return None
        return self.train_flops + self.eval_flops

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["total_flops"] = self.total_flops
        doc["notes"] = list(self.notes)
        if self.memory is not None:
            doc["memory"]["total"] = self.memory.total
            doc["memory_gib"] = round(self.memory.total / GIB, 3)
        else:
            doc["memory_gib"] = None
        return doc


def _resolved_config(study_name: str, spec: dict[str, Any], run: PlannedRun):
    from ftscale_trainer.config import TrainConfig  # torch-free; keeps grid import-light

    doc = grid.trainer_config(study_name, spec, run)
    return TrainConfig.from_dict(doc).resolved()


def _configs(study_name: str, spec: dict[str, Any], runs: list[PlannedRun]) -> list[Any]:
    """The resolved trainer config of every run. Building one costs milliseconds (defaults,
    type checks) and only the data size and seed differ within a (model, method, PET size),
    neither of which any default depends on, so one is built per triple and copied."""
    built: dict[tuple, Any] = {}
    out = []
    for run in runs:
        triple = (run.key.model, run.key.method, run.key.pet_size)
        if triple not in built:
            built[triple] = _resolved_config(study_name, spec, run)
        out.append(replace(built[triple], data_size=run.key.data_size, seed=run.key.seed,
                           run_id=run.run_id))
    return out


def workload(cfg: Any) -> Workload:
    """Steps, tokens and evaluation sizes of a resolved ftscale_trainer TrainConfig."""
    prompt = cfg.pet_size if cfg.method == "prompt" else 0
    source = cfg.max_source_tokens + prompt
    seq = source + cfg.max_target_tokens
    steps = total_steps(cfg.max_steps, cfg.max_epochs, cfg.data_size, cfg.batch_size)
    evals = math.ceil(steps / cfg.eval_interval)
    sets = [cfg.test_examples] + [z.examples for z in cfg.zero_shot]
    eval_tokens = seq * (evals * cfg.dev_examples + sum(sets))
    decoded = [min(cfg.generation_examples, n) if n else cfg.generation_examples
               for n in sets] if cfg.generation else []
    decode_steps = sum(math.ceil(n / DECODE_BATCH) * cfg.max_new_tokens for n in decoded)
    decode_tokens = sum(decoded) * (source + cfg.max_new_tokens)
    return Workload(steps, cfg.batch_size, seq, steps * cfg.batch_size * seq, evals,
                    eval_tokens, sum(decoded), decode_steps, decode_tokens)


def plan_run(run: PlannedRun, cfg: Any, gpu: GpuSettings | None, *,
             price_cpu_runs: bool = False) -> RunPlan:
    """The plan of one run from its resolved trainer config `cfg`. `gpu` None prices nothing.
    A run with gpus 0 is a CPU run: not priced, unless `price_cpu_runs` (then on one GPU, as
    `ftscale run` gives it on a GPU machine)."""
    key = run.key
    notes: list[str] = []
    shape = model_shape(run.model)
    # A multi-node run (models[].nodes) holds gpus on each of its nodes.
    nodes = max(1, int(run.model.get("nodes", 1) or 1))
    priced = run.gpus * nodes if run.gpus > 0 else (1 if price_cpu_runs else 0)
    on_gpu = priced > 0
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if on_gpu else "fp32")
    base = dict(run_id=run.run_id, model=key.model, method=key.method, pet_size=key.pet_size,
                data_size=key.data_size, seed=key.seed, gpus=run.gpus, priced_gpus=priced,
                precision=precision)
    if shape is None:
        return RunPlan(**base, params=None, adapter_params=None, workload=None,
                       train_flops=None, recompute_flops=None, eval_flops=None, gpu_hours=None,
                       wall_hours=None, memory=None, fits=None,
                       notes=(f"model {key.model}: size unknown; set models[].parameters",))
    if not shape.exact:
        notes.append("shape inferred from parameters; embeddings and logits not counted")
    if cfg.early_stopping_patience:
        notes.append("early stopping: steps are an upper bound")
    n = shape.non_embedding_params
    adapter = adapter_params(key.method, cfg.pet_size, shape, cfg.lora_targets)
    work = workload(cfg)

    capacity = None
    if on_gpu and gpu is not None and gpu.memory_gib is not None:
        capacity = gpu.memory_gib * GIB
    processes = max(1, priced)
    local_batch = max(1, math.ceil(work.batch_size / processes))
    sharded = planned_sharding(key.method, getattr(cfg, "sharding", "auto"), shape,
                               precision=precision, processes=processes,
                               tokens_per_example=work.seq_len, capacity_bytes=capacity,
                               on_gpu=on_gpu)
    memory = choose_memory(
        key.method, shape, adapter, precision=precision, gpus=priced, local_batch=local_batch,
        seq_len=work.seq_len, micro_batch=getattr(cfg, "micro_batch_size", None),
        checkpointing=_flag(getattr(cfg, "gradient_checkpointing", "auto")),
        sharded=sharded, capacity_bytes=capacity, on_gpu=on_gpu)
    fits = None if capacity is None else memory.total <= capacity

    train = training_flops(key.method, n, adapter, work.train_tokens)
    recompute = (recompute_flops(n, adapter, work.train_tokens, key.method)
                 if memory.gradient_checkpointing else 0.0)
    loss_eval = forward_flops(n + adapter, work.eval_tokens)
    decode = forward_flops(n + adapter, work.decode_tokens)

    gpu_hours = wall_hours = None
    if on_gpu and gpu is not None:
        rate = gpu.peak_for(precision) * 1e12 * gpu.mfu  # FLOP/s per GPU
        compute_gpu_s = (train + recompute + loss_eval) / rate
        decode_s = decode / (rate * processes)
        if gpu.bandwidth_tbs:
            weight_bytes = (n + shape.embedding_params) * (2 if precision != "fp32" else 4)
            decode_s = max(decode_s, work.decode_steps * weight_bytes / (gpu.bandwidth_tbs * 1e12))
        # every GPU of the run is held while it decodes
        gpu_hours = (compute_gpu_s + decode_s * processes) / 3600
        wall_hours = (compute_gpu_s / processes + decode_s) / 3600
        if run.gpus == 0:
            notes.append("gpus: 0 (a CPU run); priced on one GPU")
    elif not on_gpu:
        notes.append("no GPU: a CPU run (FLOPs only)")
    return RunPlan(**base, params=n, adapter_params=adapter, workload=work, train_flops=train,
                   recompute_flops=recompute, eval_flops=loss_eval + decode,
                   gpu_hours=gpu_hours, wall_hours=wall_hours, memory=memory, fits=fits,
                   notes=tuple(notes))


# ---- the study ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GroupTotal:
    model: str
    method: str
    runs: int
    flops: float | None
    gpu_hours: float | None
    max_memory_gib: float | None
    gpus: int
    fits: bool | None


@dataclass(frozen=True)
class StudyPlan:
    study: str
    gpu: GpuSettings | None
    runs: tuple[RunPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def total_flops(self) -> float:
        return sum(r.total_flops or 0.0 for r in self.runs)

    @property
    def total_gpu_hours(self) -> float:
        return sum(r.gpu_hours or 0.0 for r in self.runs)

    @property
    def unpriced_runs(self) -> int:
        return sum(1 for r in self.runs if r.gpu_hours is None)

    def groups(self) -> list[GroupTotal]:
        """Totals per (model, method), in run order."""
        order: dict[tuple[str, str], list[RunPlan]] = {}
        for r in self.runs:
            order.setdefault((r.model, r.method), []).append(r)
        out = []
        for (model, method), members in order.items():
            flops = [r.total_flops for r in members if r.total_flops is not None]
            hours = [r.gpu_hours for r in members if r.gpu_hours is not None]
            mems = [r.memory.total / GIB for r in members if r.memory is not None]
            fits = [r.fits for r in members if r.fits is not None]
            out.append(GroupTotal(model, method, len(members), sum(flops) if flops else None,
                                  sum(hours) if hours else None, max(mems) if mems else None,
                                  members[0].gpus, all(fits) if fits else None))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "gpu": asdict(self.gpu) if self.gpu else None,
            "total_flops": self.total_flops,
            "total_gpu_hours": self.total_gpu_hours,
            "unpriced_runs": self.unpriced_runs,
            "notes": list(self.notes),
            "groups": [asdict(g) for g in self.groups()],
            "runs": [r.to_dict() for r in self.runs],
        }


def plan_study(spec: dict[str, Any], study_name: str = "study", *, gpu_type: str | None = None,
               mfu: float | None = None) -> StudyPlan:
    """The cost plan of every run of a (validated) spec. `gpu_type`/`mfu` override
    spec.execution.gpu (the command line's --gpu/--mfu); naming a GPU type also prices CPU runs
    (gpus: 0) on one GPU of it. Raises CostPlanError (bad GPU settings) or grid.GridError."""
    gpu = gpu_settings(spec, gpu_type, mfu)
    expanded = grid.expand(spec)
    notes = []
    if gpu.source == "default" and any(r.gpus > 0 for r in expanded):
        notes.append(f"no execution.gpu in the spec: GPU runs priced on {gpu.type} "
                     f"({gpu.peak_tflops:g} TFLOP/s bf16, MFU {gpu.mfu:g})")
    runs = tuple(plan_run(r, cfg, gpu, price_cpu_runs=gpu_type is not None)
                 for r, cfg in zip(expanded, _configs(study_name, spec, expanded)))
    return StudyPlan(study_name, gpu, runs, tuple(notes))


# ---- the memory check ---------------------------------------------------------------------
def capacity_declared(spec: dict[str, Any]) -> bool:
    """Whether the spec says how much memory its GPUs have (else nothing is checked)."""
    execution = spec.get("execution", {})
    return "gpuMemoryGiB" in execution or "type" in (execution.get("gpu") or {})


def check_fits(spec: dict[str, Any], study_name: str = "study") -> list[str]:
    """One message per (model, method, PET size) whose GPU runs cannot fit their GPUs' memory
    (execution.gpuMemoryGiB, else the memory of execution.gpu.type) even with the automatic
    settings at their most frugal, naming the estimate and what to change. Empty when all fit,
    when no run uses a GPU, or when the spec says nothing about its GPUs. Raises CostPlanError
    or grid.GridError as plan_study does."""
    if not capacity_declared(spec):
        return []
    return fit_problems(spec, plan_study(spec, study_name))


def fit_problems(spec: dict[str, Any], plan: StudyPlan) -> list[str]:
    """check_fits's messages for a plan already made (on whatever GPU it was priced)."""
    messages, seen = [], set()
    expanded = {r.run_id: r for r in grid.expand(spec)}
    for r in plan.runs:
        if r.fits is not False or (r.model, r.method, r.pet_size) in seen:
            continue
        seen.add((r.model, r.method, r.pet_size))
        run = expanded[r.run_id]
        cfg = _resolved_config(plan.study, spec, run)
        what = r.method + (f" (size {r.pet_size})" if r.pet_size else "")
        gpus = max(1, r.gpus)
        m = r.memory
        settings = (f"micro-batch {m.micro_batch_size} "
                    f"{'with' if m.gradient_checkpointing else 'without'} gradient checkpointing"
                    f"{', FSDP-sharded' if m.sharded else ''}")
        head = (f"model {r.model}, method {what}: needs ≈ {m.total / GIB:.1f} GiB per GPU at "
                f"{settings} ({m.breakdown_gib()} GiB) but has {gpus} GPU"
                f"{'s' if gpus != 1 else ''} of {plan.gpu.memory_gib:g} GiB")
        messages.append(f"{head}; {_remedies(run, cfg, r, plan.gpu)}")
    return messages


def _fits_with(run: PlannedRun, cfg: Any, gpu: GpuSettings, **changes: Any) -> RunPlan:
    price_cpu = run.gpus == 0
    gpus = changes.pop("gpus", run.gpus)
    return plan_run(replace(run, gpus=gpus), replace(cfg, **changes) if changes else cfg, gpu,
                    price_cpu_runs=price_cpu)


def _remedies(run: PlannedRun, cfg: Any, current: RunPlan, gpu: GpuSettings) -> str:
    """What would make the run fit, each tried as the only change."""
    fixes = []
    if getattr(cfg, "gradient_checkpointing", "auto") == "false":
        if _fits_with(run, cfg, gpu, gradient_checkpointing="auto").fits:
            fixes.append("allow gradient checkpointing (training.gradientCheckpointing: auto "
                         "or true)")
    if getattr(cfg, "micro_batch_size", None):
        if _fits_with(run, cfg, gpu, micro_batch_size=None).fits:
            fixes.append("lower training.microBatchSize (or leave it out to let ftscale pick "
                         "one)")
    if current.precision == "fp32" and run.key.method != grid.FMT:
        if _fits_with(run, cfg, gpu, precision="bf16").fits:
            fixes.append("train in bf16 (training.precision: bf16 loads the frozen base in 16 "
                         "bits)")
    if run.key.method == grid.FMT and getattr(cfg, "sharding", "auto") == "none" \
            and run.gpus > 1 and _fits_with(run, cfg, gpu, sharding="auto").fits:
        fixes.append(f"let ftscale shard it (training.sharding: auto or fsdp; FSDP splits "
                     f"weights, gradients and Adam state across the {run.gpus} GPUs)")
    if run.key.method == grid.FMT:
        for g in range(max(2, run.gpus + 1), 65):
            if _fits_with(run, cfg, gpu, gpus=g).fits:
                fixes.append(f"give the model {g} or more GPUs (models[].gpus: {g}; fmt is "
                             f"sharded with FSDP across them)")
                break
    bigger = [t for t in sorted(GPU_TYPES.values(), key=lambda t: t.memory_gib)
              if t.memory_gib > (gpu.memory_gib or 0)
              and _fits_with(run, cfg, replace(gpu, memory_gib=t.memory_gib)).fits]
    if bigger:
        fixes.append(f"use GPUs with more memory (e.g. {bigger[0].name}, "
                     f"{bigger[0].memory_gib:g} GiB: execution.gpu.type / gpuMemoryGiB)")
    if not fixes:
        fixes.append("no single change is enough: choose a smaller model")
    text = "to fit: " + "; or ".join(fixes)
    if run.key.method != grid.FMT:
        text += ". More GPUs do not help: lora and prompt keep the whole base model on each"
    return text
