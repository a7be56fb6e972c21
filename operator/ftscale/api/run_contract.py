"""What a run process is started with — the same on a cluster (the run Job's container
command) and locally (`ftscale run`'s subprocess). docs/run-contract.md states the whole
contract for trainers of your own: this command line, the config file, the result document
(ftscale.results), the exit codes (ftscale.api.outcomes) and SIGTERM.
"""

from __future__ import annotations

from typing import Sequence

# spec.execution.command replaces this (a trainer of your own).
DEFAULT_COMMAND = ("python", "-m", "ftscale_trainer")
CONFIG_FLAG = "--config"  # the run's JSON config (TrainConfig fields)
OUTPUT_FLAG = "--output"  # folder for result.json (full form), config.json, checkpoints
METRICS_PORT_FLAG = "--metrics-port"  # serve Prometheus metrics while training


# The default trainer on N > 1 GPUs of one pod: one process per GPU, started by torchrun
# (what `accelerate launch` runs underneath); the trainer uses accelerate inside. SIGTERM
# reaches torchrun, which forwards it to every rank (docs/trainer.md, "Several processes").
TORCHRUN = ("torchrun", "--standalone", "--nnodes=1")
LAUNCH_WRAPPER = "ftscale_trainer.launch"
# One run on M > 1 nodes (pods of an Indexed Job): torchrun on every pod, meeting through the
# c10d rendezvous that the pod of index 0 hosts (docs/trainer.md, "Several nodes").
RDZV_BACKEND = "c10d"
# The rendezvous port on the pod of index 0: torchrun's own default for c10d. Each pod has its
# network namespace, so the port is free unless the pod runs with hostNetwork.
RDZV_PORT = 29400


def launcher(command: Sequence[str] | None, processes: int, *, nodes: int = 1,
             rdzv_endpoint: str | None = None, rdzv_id: str | None = None) -> list[str]:
    """The command that starts the trainer with `processes` processes (one per GPU) on each of
    `nodes` nodes. A trainer of your own (`command`) is started as given: it launches its own
    processes (on several nodes it reads FTSCALE_NODES / FTSCALE_RDZV_ENDPOINT, set by the
    operator).

    nodes > 1 needs `rdzv_endpoint` (host:port every node reaches; the host hosts the store)
    and `rdzv_id` (the same on every node of one run: the run id); ValueError without them.
    A CPU run (processes 0) starts one process per node."""
    if command:
        return list(command)
    # torchrun exits 1 whatever a rank's own exit code: the wrapper restores the run's code
    # from rank 0's result, so the podFailurePolicy still fails a NaN run at once.
    wrap = ["python", "-m", LAUNCH_WRAPPER]
    if nodes > 1:
        if not rdzv_endpoint or not rdzv_id:
            raise ValueError(f"a run on {nodes} nodes needs a rendezvous endpoint and id")
        return [*wrap, "torchrun", f"--nnodes={nodes}", f"--nproc_per_node={max(1, processes)}",
                f"--rdzv-backend={RDZV_BACKEND}", f"--rdzv-endpoint={rdzv_endpoint}",
                f"--rdzv-id={rdzv_id}", "-m", DEFAULT_COMMAND[-1]]
    if processes > 1:
        return [*wrap, *TORCHRUN, f"--nproc_per_node={processes}", "-m", DEFAULT_COMMAND[-1]]
    return list(DEFAULT_COMMAND)


def trainer_argv(command: Sequence[str] | None, config_path: str, output_dir: str | None = None,
                 metrics_port: int | None = None) -> list[str]:
    """The full command line of one run: `command` (or the default) + the contract's flags."""
    argv = list(command or DEFAULT_COMMAND) + [CONFIG_FLAG, config_path]
    if output_dir:
        argv += [OUTPUT_FLAG, output_dir]
    if metrics_port:
        argv += [METRICS_PORT_FLAG, str(metrics_port)]
    return argv
