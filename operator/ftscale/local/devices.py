"""What this machine can run in parallel: GPUs (by index) or CPU cores.

`ftscale run` runs as many trainer processes at once as the devices allow: on GPUs, each run
gets its model's `gpus` (at least one) through CUDA_VISIBLE_DEVICES; on CPU, `--parallel`
processes share the cores evenly (torch threads per process = cores // parallel). Detection
uses `nvidia-smi` so that it costs no torch import.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Devices:
    gpus: tuple[str, ...]  # GPU indices usable by runs (empty on CPU)
    cpus: int  # CPU cores usable by this process

    @property
    def kind(self) -> str:
        return "gpu" if self.gpus else "cpu"


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def detect_gpus() -> tuple[str, ...]:
    """GPU indices: CUDA_VISIBLE_DEVICES when set (empty string = none), else nvidia-smi's."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return tuple(v.strip() for v in visible.split(",") if v.strip() and v.strip() != "-1")
    if not shutil.which("nvidia-smi"):
        return ()
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def detect(use_gpus: bool = True) -> Devices:
    return Devices(gpus=detect_gpus() if use_gpus else (), cpus=usable_cpus())


def plan_parallelism(devices: Devices, requested: int | None, max_parallel: int) -> tuple[int, int]:
    """(runs at once, torch threads per run). On GPUs the GPU pool limits concurrency itself;
    on CPU the default is one run per core, capped by the study's maxParallelRuns."""
    if devices.gpus:
        parallel = requested or min(max_parallel, len(devices.gpus))
        threads = max(1, devices.cpus // max(1, parallel))
        return parallel, threads
    parallel = requested or min(max_parallel, devices.cpus)
    parallel = max(1, parallel)
    return parallel, max(1, devices.cpus // parallel)
