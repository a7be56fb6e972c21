"""The shell helpers behind up.sh/down.sh (tests/cluster/lib.sh): port choice and the PID check
that keeps down.sh from ever killing a process it did not start. No cluster needed."""
import subprocess
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "cluster" / "lib.sh"


def bash(script: str, state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {LIB}; {script}"],
        env={"PATH": "/usr/bin:/bin:/usr/sbin:/sbin", "FTSCALE_CLUSTER_DIR": str(state_dir)},
        capture_output=True, text=True, timeout=30,
    )


def test_free_ports_are_distinct_and_below_the_ephemeral_range(tmp_path):
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    out = bash("free_ports 20", tmp_path)
    ports = [int(p) for p in out.stdout.split()]
    assert len(ports) == 20 and len(set(ports)) == 20
    assert all(20000 <= p < low for p in ports)


def test_pid_check_follows_the_process_not_the_number(tmp_path):
    (tmp_path / "pids").mkdir()
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert bash(f"record_pid probe {sleeper.pid}; pid_of probe", tmp_path).stdout.strip() == str(sleeper.pid)
        # Same PID, different start time: what a recycled PID looks like. Not ours any more.
        pid_file = tmp_path / "pids" / "probe.pid"
        pid, ticks = pid_file.read_text().split()
        pid_file.write_text(f"{pid} {int(ticks) + 1}\n")
        assert bash("pid_of probe", tmp_path).returncode != 0
    finally:
        sleeper.kill()
        sleeper.wait()
    pid_file.write_text(f"{pid} {ticks}\n")
    assert bash("pid_of probe", tmp_path).returncode != 0  # the process is gone


def test_down_with_nothing_started_touches_nothing(tmp_path):
    down = LIB.parent / "down.sh"
    proc = subprocess.run([str(down)], env={"PATH": "/usr/bin:/bin", "FTSCALE_CLUSTER_DIR": str(tmp_path)},
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "nothing to stop" in proc.stderr
