"""Where the control-plane binaries live, building them first when they are missing.

`build.sh` decides the folder ($FTSCALE_CACHE/cluster/bin-<hash of the pinned versions>);
this module only asks it, so Python and shell never disagree.

    from cluster import paths
    helm = paths.binary("helm")          # builds (cached) if needed, returns an absolute path

Fails with BuildError (carrying build.sh's output) when a binary cannot be built.
"""
from __future__ import annotations

import functools
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD_SCRIPT = HERE / "build.sh"
BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
    "promtool",
)


class BuildError(RuntimeError):
    """build.sh failed; the message holds its output (the failing `go build` and its errors)."""


def bin_dir() -> Path:
    """The cache folder build.sh builds into (may not exist yet)."""
    out = subprocess.run(
        [str(BUILD_SCRIPT), "--print-bin-dir"], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip())


@functools.lru_cache(maxsize=1)
def ensure_built() -> Path:
    """Run build.sh (a no-op when every binary is cached) and return the bin folder.

    The first run on a fresh machine compiles for many minutes (docs/control-plane.md).
    """
    proc = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if proc.returncode != 0:
        raise BuildError(
            f"tests/cluster/build.sh failed (exit {proc.returncode}); rerun it by hand to see"
            f" progress. Its output:\n{proc.stdout}"
        )
    return bin_dir()


def binary(name: str) -> Path:
    """Absolute path of one built binary (one of BINARIES), building if needed."""
    if name not in BINARIES:
        raise ValueError(f"unknown binary {name!r}; known: {', '.join(BINARIES)}")
    path = ensure_built() / name
    if not path.is_file():
        raise BuildError(f"build.sh succeeded but {path} is missing; delete {path.parent} and rebuild")
    return path
