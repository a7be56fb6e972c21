"""Start and stop a local control plane from Python (a thin wrapper over up.sh / down.sh).

    plane = LocalControlPlane(Path("/tmp/my-cluster"))
    kubeconfig = plane.start(owner_pid=os.getpid())   # blocks until nodes are Ready
    ...
    plane.stop()                                      # stops exactly what start() launched

start() raises ControlPlaneError with up.sh's output (which ends with the failing component's
log) when a component does not come up; up.sh has already stopped the rest by then.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import paths

UP_SCRIPT = paths.HERE / "up.sh"
DOWN_SCRIPT = paths.HERE / "down.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or stopped; the message carries the script output."""


@dataclass
class LocalControlPlane:
    """One control plane whose state (pki, kubeconfigs, etcd data, logs, pids) is in state_dir."""

    state_dir: Path
    gpu_nodes: int = 4
    cpu_nodes: int = 2
    kubeconfig: Path | None = None

    def _env(self, owner_pid: int | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["FTSCALE_CLUSTER_DIR"] = str(self.state_dir)
        env["FTSCALE_CLUSTER_GPU_NODES"] = str(self.gpu_nodes)
        env["FTSCALE_CLUSTER_CPU_NODES"] = str(self.cpu_nodes)
        if owner_pid is not None:
            env["FTSCALE_CLUSTER_OWNER_PID"] = str(owner_pid)
        return env

    def start(self, owner_pid: int | None = None) -> Path:
        """Bring the cluster up (idempotent) and return the admin kubeconfig path.

        owner_pid: when given, a watchdog stops the cluster as soon as that process exits.
        """
        self.state_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [str(UP_SCRIPT)], env=self._env(owner_pid), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ControlPlaneError(
                f"tests/cluster/up.sh failed (exit {proc.returncode}); state and logs are in"
                f" {self.state_dir}/logs.\n{proc.stderr}{proc.stdout}"
            )
        lines = proc.stdout.strip().splitlines()
        if not lines:
            raise ControlPlaneError(f"up.sh printed no kubeconfig path:\n{proc.stderr}")
        self.kubeconfig = Path(lines[-1])
        return self.kubeconfig

    def stop(self) -> None:
        """Stop every process start() launched (and only those)."""
        proc = subprocess.run(
            [str(DOWN_SCRIPT)], env=self._env(), capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise ControlPlaneError(f"tests/cluster/down.sh failed:\n{proc.stderr}{proc.stdout}")

    def log_path(self, component: str) -> Path:
        """The log file of one component (see COMPONENTS)."""
        return self.state_dir / "logs" / f"{component}.log"

    def running_pids(self) -> dict[str, int]:
        """Components whose recorded process still runs, with their PIDs (checked by start time)."""
        running: dict[str, int] = {}
        for component in (*COMPONENTS, "watchdog"):
            pid_file = self.state_dir / "pids" / f"{component}.pid"
            try:
                pid_text, ticks = pid_file.read_text().split()
                stat = Path(f"/proc/{pid_text}/stat").read_text()
            except (OSError, ValueError):
                continue
            fields = stat.rsplit(")", 1)[1].split()
            # fields[0] is the state (field 3 of stat), fields[19] the start time (field 22).
            if fields[0] != "Z" and fields[19] == ticks:
                running[component] = int(pid_text)
        return running
