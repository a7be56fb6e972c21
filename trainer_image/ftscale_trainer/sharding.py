"""When a run shards its weights with FSDP, and what one sharded process holds (torch-free).

One rule, two readers: the trainer applies it when a run starts (train.shard_if_needed,
train.memory_plan) and the study side predicts it before any run starts (ftscale.costplan's
memory check, which must not reject a study the trainer would shard into its GPUs, nor
accept one it would not). The memory terms come from ftscale_trainer.memory.
"""

from __future__ import annotations

from dataclasses import replace

from ftscale_trainer import memory
from ftscale_trainer.config import SHARDINGS, ConfigError


def choose_sharding(setting: str, method: str, world_size: int, device_type: str,
                    fits_one_device: bool | None) -> tuple[str, str]:
    """("none" | "fsdp", why) for a run: `setting` is the config's `sharding`, `fits_one_device`
    whether the memory estimate says an unsharded FMT process fits one GPU (None: no estimate;
    see `fmt_fits_one_device`).

    `auto` shards only FMT, only with several processes, only on GPUs, and only when the
    estimate says the model does not fit one device: data parallelism is simpler and at least
    as fast whenever it fits. `fsdp` is honoured anywhere there are several processes (CPU
    included: that is how it is tested). Raises ConfigError for `fsdp` with a PET method, whose
    trained tensors are small and whose frozen base weights FSDP here would not shard apart.
    """
    if setting not in SHARDINGS:
        raise ConfigError(f"sharding must be one of {', '.join(SHARDINGS)}; got {setting!r}")
    if setting == "fsdp" and method != "fmt":
        raise ConfigError(f"sharding: fsdp is for full-model tuning; {method} trains few "
                          f"tensors and runs data parallel (use sharding: auto or none)")
    if world_size < 2:
        return "none", ("one process: nothing to shard across" if setting == "fsdp"
                        else "one process")
    if setting == "none":
        return "none", "sharding: none"
    if setting == "fsdp":
        return "fsdp", "sharding: fsdp"
    if method != "fmt":
        return "none", f"{method} runs data parallel"
    if device_type != "cuda":
        return "none", "auto shards only on GPUs (ask for sharding: fsdp on CPU)"
    if fits_one_device is None:
        return "none", "no memory estimate"
    if fits_one_device:
        return "none", "the memory estimate fits one GPU"
    return "fsdp", "the memory estimate does not fit one GPU"


def fmt_fits_one_device(dims: memory.ModelDims, precision: str, tokens_per_example: int,
                        device_bytes: float) -> bool:
    """Whether one unsharded FMT process fits a device of `device_bytes` at the least it can
    need — one example, activation checkpointing — within memory.BUDGET_FRACTION of it: the
    `fits_one_device` of choose_sharding's `auto`. `precision` is the resolved one."""
    est = memory.estimate(dims, "fmt", precision)
    return est.total(tokens_per_example, True) <= device_bytes * memory.BUDGET_FRACTION


def sharded_estimate(est: memory.MemoryEstimate, processes: int,
                     layers: int) -> memory.MemoryEstimate:
    """A memory estimate under FSDP: weights, gradients and optimizer state split across the
    processes, plus one decoder layer's weights gathered whole while it runs."""
    return replace(est, weights=est.weights // processes + est.weights // max(1, layers),
                   gradients=est.gradients // 2 // processes,  # no DDP all-reduce buckets
                   optimizer=est.optimizer // processes)
