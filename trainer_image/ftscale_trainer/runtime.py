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
