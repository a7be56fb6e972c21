"""Start and stop a local control plane from Python (a thin wrapper over up.sh / down.sh).

    plane = LocalControlPlane(Path("/tmp/my-cluster"))
    kubeconfig = plane.start(owner_pid=os.getpid())   # blocks until nodes are Ready
    ...
    plane.stop()                                      # stops exactly what start() launched
    plane.restart("etcd")                             # one component down and up again

start() raises ControlPlaneError with up.sh's output (which ends with the failing component's
log) when a component does not come up; up.sh has already stopped the rest by then.
"""
from __future__ import annotations

import os
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from . import paths

UP_SCRIPT = paths.HERE / "up.sh"
DOWN_SCRIPT = paths.HERE / "down.sh"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
# Each component's health endpoint as up.sh waits for it: (ports.env key, scheme, path).
# /readyz, /healthz and /health are readable anonymously, so no client certificate is needed.
HEALTH = {
    "etcd": ("ETCD_PORT", "http", "/health"),
    "kube-apiserver": ("APISERVER_PORT", "https", "/readyz"),
    "kube-controller-manager": ("CONTROLLER_MANAGER_PORT", "https", "/healthz"),
    "kube-scheduler": ("SCHEDULER_PORT", "https", "/healthz"),
    "kwok": ("KWOK_PORT", "http", "/healthz"),
}


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

    def ports(self) -> dict[str, int]:
        """The ports up.sh chose (state_dir/ports.env), e.g. {"APISERVER_PORT": 31234, ...}."""
        text = (self.state_dir / "ports.env").read_text()
        return {k: int(v) for k, v in (line.split("=", 1) for line in text.split() if "=" in line)}

    def healthy(self, component: str) -> bool:
        """Whether the component answers its health endpoint (see HEALTH) with 200 now."""
        port_key, scheme, path = HEALTH[component]
        url = f"{scheme}://127.0.0.1:{self.ports()[port_key]}{path}"
        # Self-signed serving certificates: only liveness is asked, not the server's identity.
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        try:
            with urllib.request.urlopen(url, timeout=2, context=insecure) as resp:
                return resp.status == 200
        except OSError:
            return False

    def restart(self, component: str, sig: int = signal.SIGTERM, down_seconds: float = 0.0,
                timeout: float = 90.0) -> float:
        """Stop one running component and start it again with the same command line (flags,
        ports, data dir), appending to its log and updating its pid file (so stop() and the
        watchdog still find it); return once its health endpoint answers.

        sig: SIGTERM (graceful, SIGKILL after 15 s, as down.sh) or SIGKILL (a crash).
        down_seconds: how long it stays down before the new start.
        Returns the seconds from the stop signal to healthy again. Raises ControlPlaneError
        when the component is not running or not healthy again within `timeout`.
        """
        pid = self.running_pids().get(component)
        if component not in COMPONENTS or pid is None:
            raise ControlPlaneError(f"{component} is not a running component of {self.state_dir}")
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        t0 = time.monotonic()
        self._signal(pid, sig)
        deadline = t0 + 15
        while component in self.running_pids():
            if time.monotonic() > deadline:
                self._signal(pid, signal.SIGKILL)
            time.sleep(0.05)
        time.sleep(down_seconds)
        with open(self.log_path(component), "ab") as log:
            # Own session, like up.sh's setsid: a Ctrl-C aimed at the caller does not reach it.
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        ticks = stat.rsplit(")", 1)[1].split()[19]  # field 22: the start time (lib.sh record_pid)
        (self.state_dir / "pids" / f"{component}.pid").write_text(f"{proc.pid} {ticks}\n")
        deadline = time.monotonic() + timeout
        while not self.healthy(component):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{component} did not come back after a restart (exit {proc.poll()}); log: "
                    f"{self.log_path(component)}")
            time.sleep(0.2)
        return time.monotonic() - t0

    @staticmethod
    def _signal(pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass  # it exited between the check and the signal: what we wanted
