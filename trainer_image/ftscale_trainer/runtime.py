"""Device placement, mixed precision and data parallelism.

On GPUs and under `accelerate launch` (several processes in one pod) this is accelerate's
`Accelerator`: it places the model, wraps it for DistributedDataParallel, runs autocast and
(for fp16) loss scaling. A single CPU process — every toy run of the demo and the tests — gets
a plain-torch stand-in with the same methods instead, because importing accelerate costs
4–5 s of CPU there and does nothing a CPU process needs. FTSCALE_ACCELERATE=1/0 forces either.
"""

from __future__ import annotations

import contextlib
import os

import torch


def _want_accelerate() -> bool:
    forced = os.environ.get("FTSCALE_ACCELERATE")
    if forced is not None:
        return forced == "1"
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 or torch.cuda.is_available()


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


class PlainRuntime:
    """One process, one device, torch only."""

    rank = 0
    world_size = 1
    is_main = True
    sharded = False  # parameters split across processes (FSDP): see ShardedRuntime

    def __init__(self, precision: str):
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, self.device)
        self._dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        self._scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def prepare(self, model, make_optimizer):
        """(placed model, its optimizer): `make_optimizer(model)` is called on the placed model."""
        model = model.to(self.device)
        return model, make_optimizer(model)

    # ---- state for the best-dev selection and checkpoints (full tensors, CPU) -----------------
    def trainable_state(self, model) -> dict:
        """CPU copies of the trainable tensors by parameter name, whole, on every rank."""
        from ftscale_trainer import models

        return models.trainable_state(self.unwrap(model))

    def trainable_shapes(self, model) -> dict:
        """The trainable tensors by name, as `trainable_state` names them (shapes, dtypes)."""
        return {n: p.detach() for n, p in self.unwrap(model).named_parameters() if p.requires_grad}

    def load_trainable_state(self, model, state: dict) -> None:
        from ftscale_trainer import models

        models.load_trainable_state(self.unwrap(model), state)

    def full_state(self, model, state: dict | None = None) -> dict:
        """Whole trainable tensors for a checkpoint (rank 0 writes them): `state` (a
        `trainable_state`) or, when None, the current weights. Unsharded, that is all it is."""
        return self.trainable_state(model) if state is None else state

    def shard_state(self, model, full: dict) -> dict:
        """What `trainable_state` would give for these whole tensors (unsharded: themselves)."""
        return full

    def load_full_state(self, model, full: dict) -> None:
        self.load_trainable_state(model, full)

    def optimizer_state(self, model, optimizer) -> dict:
        """The optimizer's state_dict as checkpoints keep it (per-parameter keys: positions)."""
        return optimizer.state_dict()

    def load_optimizer_state(self, model, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def check_optimizer_state(self, model, optimizer, state: dict) -> None:
        """Raise checkpoint.CorruptCheckpoint unless `state` fits this optimizer's parameters
        (checked before anything is applied: a half-applied checkpoint is no step at all)."""
        from ftscale_trainer.checkpoint import CorruptCheckpoint, check_optimizer_fits

        sizes = [len(g["params"]) for g in optimizer.param_groups]
        saved = [len(g.get("params", ())) for g in state["param_groups"]]
        if sizes != saved:
            raise CorruptCheckpoint(f"optimizer parameter groups of sizes {saved}, this "
                                    f"model's are {sizes}")
        params = [p for g in optimizer.param_groups for p in g["params"]]
        check_optimizer_fits(state, dict(enumerate(params)))

    def autocast(self):
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self._dtype)

    def backward(self, loss):
        (self._scaler.scale(loss) if self._scaler else loss).backward()

    def clip_and_step(self, model, optimizer, max_norm: float) -> None:
        if self._scaler:
            self._scaler.unscale_(optimizer)
        if max_norm > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_norm)
        if self._scaler:
            self._scaler.step(optimizer)
            self._scaler.update()
        else:
            optimizer.step()

    def sum_across(self, tensor):
        return tensor

    def no_sync(self, model):
        """Skip the gradient all-reduce of this backward (all but the last micro-batch)."""
        return contextlib.nullcontext()

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def unwrap(self, model):
        return model

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)} x1"
        return f"cpu x{torch.get_num_threads()} threads"

    def gpu_count(self) -> int:
        """GPUs this run holds (one per process on CUDA; 0 on CPU): its GPU-seconds are wall
        seconds × this."""
        return self.world_size if self.device.type == "cuda" else 0


class AccelerateRuntime(PlainRuntime):
    def __init__(self, precision: str):
        from accelerate import Accelerator

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.precision = resolve_precision(precision, device)
        # cpu=True lets accelerate form a multi-process CPU group (gloo) under torchrun.
        self.acc = Accelerator(mixed_precision={"fp32": "no"}.get(self.precision, self.precision),
                               cpu=device.type == "cpu")
        self.device = self.acc.device
        self.rank = self.acc.process_index
        self.world_size = self.acc.num_processes
        self.is_main = self.acc.is_main_process

    def prepare(self, model, make_optimizer):
        model = model.to(self.device)
        return self.acc.prepare(model, make_optimizer(model))

    def autocast(self):
        return self.acc.autocast()

    def backward(self, loss):
        self.acc.backward(loss)

    def clip_and_step(self, model, optimizer, max_norm: float) -> None:
        if max_norm > 0:
            self.acc.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_norm)
        optimizer.step()

    def sum_across(self, tensor):
        return self.acc.reduce(tensor, reduction="sum") if self.world_size > 1 else tensor

    def no_sync(self, model):
        return self.acc.no_sync(model)

    def barrier(self) -> None:
        self.acc.wait_for_everyone()

    def unwrap(self, model):
        return self.acc.unwrap_model(model)

    def describe(self) -> str:
        if self.device.type == "cuda":
            return f"cuda:{torch.cuda.get_device_name(self.device)} x{self.world_size}"
        return f"cpu x{self.world_size} processes"


def make_runtime(precision: str):
    return AccelerateRuntime(precision) if _want_accelerate() else PlainRuntime(precision)


# ---- sharding (FSDP2) ----------------------------------------------------------------------------
# The rule lives in ftscale_trainer.sharding (torch-free), where the study's cost plan reads it too.
from ftscale_trainer.sharding import choose_sharding  # noqa: E402,F401


def shard_units(model) -> list:
    """The modules FSDP wraps one by one: the children of the model's largest ModuleList (its
    decoder layers, whatever the architecture names them). Each is all-gathered only while it
    runs, so a process holds one layer's full weights at a time, not the model's."""
    import torch.nn as nn

    best, size = [], 0
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            count = sum(p.numel() for p in module.parameters())
            if count > size:
                best, size = list(module), count
    return best


class ShardedRuntime(AccelerateRuntime):
    """FSDP2 (`torch.distributed.fsdp.fully_shard`) over accelerate's process group.

    accelerate's own FSDP plugin needs GPUs (its FSDP mode is not offered for multi-process
    CPU), so the wrapping is torch's, done here: each decoder layer is a unit, the rest
    (embeddings, final norm, head) the root. Parameters, gradients and AdamW state are sharded
    along dim 0; gradients are reduce-scattered as averages, as DDP averages them, so the loss
    scaling of the training loop is the same. bf16 gathers parameters in bf16 and reduces
    gradients in fp32 (fp32 master weights stay sharded). fp16 is refused (it would need a
    sharded gradient scaler).

    State for the best-dev selection is each rank's own shard (a 1/N copy); checkpoints hold
    full tensors gathered to rank 0 one parameter at a time, in the same format as unsharded
    runs, so a run may resume with another process count or sharding.
    """

    sharded = True

    def __init__(self, base: AccelerateRuntime):
        from ftscale_trainer.config import ConfigError

        if base.precision == "fp16":
            raise ConfigError("sharding: fsdp needs precision bf16 or fp32 (fp16 would need a "
                              "sharded gradient scaler)")
        self.__dict__.update(base.__dict__)

    def prepare(self, model, make_optimizer):
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        model = model.to(self.device)
        policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
                  if self.precision == "bf16" else MixedPrecisionPolicy())
        for unit in shard_units(model):
            fully_shard(unit, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model, make_optimizer(model)

    def backward(self, loss):
        loss.backward()

    def clip_and_step(self, model, optimizer, max_norm: float) -> None:
        if max_norm > 0:  # DTensor gradients: the norm is the whole model's, over all shards
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                           max_norm)
        optimizer.step()

    @contextlib.contextmanager
    def no_sync(self, model):
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def unwrap(self, model):
        return model  # fully_shard changes the module in place

    def describe(self) -> str:
        return super().describe() + ", fsdp"

    # ---- state --------------------------------------------------------------------------------
    @staticmethod
    def _sharded_params(model):
        """named_parameters() as sharded DTensors: the root keeps its parameters gathered after
        a forward pass (FSDP2's default for the root), which would show whole tensors here."""
        from torch.distributed.fsdp import FSDPModule

        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.reshard()
        return model.named_parameters()

    def trainable_state(self, model) -> dict:
        """This rank's shard of each trainable tensor (CPU copies)."""
        return {n: p.to_local().detach().to("cpu", copy=True)
                for n, p in self._sharded_params(model) if p.requires_grad}

    def load_trainable_state(self, model, state: dict) -> None:
        """Put back shards `trainable_state` took on this rank."""
        self._sharded_params(model)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in state:
                    p.to_local().copy_(state[n])

    def full_state(self, model, state: dict | None = None) -> dict:
        """Whole tensors from the shards (the current weights, or a `trainable_state`), on
        rank 0 (CPU); {} elsewhere. Every rank must call it (one all-gather per tensor)."""
        from torch.distributed.tensor import DTensor

        out = {}
        for n, p in self._sharded_params(model):
            if not p.requires_grad:
                continue
            local = p.to_local() if state is None else state[n].to(self.device)
            full = DTensor.from_local(local, p.device_mesh, p.placements, run_check=False,
                                      shape=p.shape, stride=p.stride()).full_tensor()
            if self.is_main:
                out[n] = full.detach().to("cpu", copy=True)
            del full
        return out

    def shard_state(self, model, full: dict) -> dict:
        """This rank's shards of whole tensors every rank holds (no communication)."""
        from torch.distributed.tensor import distribute_tensor

        out = {}
        for n, p in self._sharded_params(model):
            if n in full:
                piece = distribute_tensor(full[n].to(self.device, p.dtype), p.device_mesh,
                                          p.placements, src_data_rank=None)
                out[n] = piece.to_local().detach().to("cpu", copy=True)
        return out

    def load_full_state(self, model, full: dict) -> None:
        self.load_trainable_state(model, self.shard_state(model, full))

    def _names_in_optimizer_order(self, model, optimizer) -> list[str]:
        names = {id(p): n for n, p in model.named_parameters()}
        return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]

    def optimizer_state(self, model, optimizer) -> dict:
        """The whole optimizer state on rank 0 ({} elsewhere), keyed by position as an
        unsharded optimizer's state_dict is (torch.distributed.checkpoint gathers it by name)."""
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                              get_optimizer_state_dict)

        state = get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if not self.is_main:
            return {}
        index = {n: i for i, n in enumerate(self._names_in_optimizer_order(model, optimizer))}
        return {"state": {index[n]: fields for n, fields in state["state"].items()},
                "param_groups": [dict(g, params=[index[n] for n in g["params"]])
                                 for g in state["param_groups"]]}

    def load_optimizer_state(self, model, optimizer, state: dict) -> None:
        """Shard a whole optimizer state (held by every rank) into this rank's optimizer."""
        import copy

        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                              set_optimizer_state_dict)

        names = self._names_in_optimizer_order(model, optimizer)
        by_name = {"state": {names[i]: fields for i, fields in state["state"].items()},
                   "param_groups": [dict(g, params=[names[i] for i in g["params"]])
                                    for g in state["param_groups"]]}
        # set_optimizer_state_dict turns the given tensors into DTensors in place: a copy
        set_optimizer_state_dict(model, optimizer, optim_state_dict=copy.deepcopy(by_name),
                                 options=StateDictOptions(full_state_dict=True))
