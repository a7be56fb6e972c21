"""Helpers shared by tests/helm: where things are, a `helm` runner, object lookup.

helm and promtool are the ones tests/cluster/build.sh builds from Go modules (the versions of
tests/cluster/versions.env); conftest.py provides them as fixtures. `helm template` renders for
the Kubernetes version of the test control plane, so the chart's kubeVersion and API choices
are checked against the version the integration tests run.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "ftscale"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
MONITORING = REPO / "monitoring"
RULES = MONITORING / "rules" / "ftscale-alerts.yaml"
RULE_TESTS = MONITORING / "rules" / "ftscale-alerts.test.yaml"
DASHBOARD_JSON = MONITORING / "dashboards" / "ftscale-studies.json"


def kubernetes_version() -> str:
    """KUBERNETES_VERSION of the test control plane (tests/cluster/versions.env), e.g. v1.36.3."""
    for line in (REPO / "tests" / "cluster" / "versions.env").read_text().splitlines():
        if line.startswith("KUBERNETES_VERSION="):
            return line.split("=", 1)[1].strip()
    raise AssertionError("KUBERNETES_VERSION missing from tests/cluster/versions.env")


class HelmError(AssertionError):
    """helm exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Helm:
    binary: Path

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # A private HOME-free config: helm must not read a developer's repositories or plugins.
        env = {**os.environ, "HELM_CACHE_HOME": "/tmp/ftscale-helm-test/cache",
               "HELM_CONFIG_HOME": "/tmp/ftscale-helm-test/config",
               "HELM_DATA_HOME": "/tmp/ftscale-helm-test/data"}
        proc = subprocess.run([str(self.binary), *args], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if check and proc.returncode != 0:
            raise HelmError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def template(self, values_files: Iterable[Path] = (), sets: Iterable[str] = (),
                 namespace: str = "ftscale-system", release: str = "ftscale",
                 values: dict[str, Any] | None = None, tmp_path: Path | None = None) -> list[dict]:
        """Render the chart; returns its objects (hooks included, NOTES not)."""
        args = ["template", release, str(CHART), "--namespace", namespace,
                "--kube-version", kubernetes_version()]
        for f in values_files:
            args += ["-f", str(f)]
        if values is not None:
            assert tmp_path is not None, "values= needs tmp_path= to write them to"
            path = tmp_path / "values.yaml"
            path.write_text(yaml.safe_dump(values))
            args += ["-f", str(path)]
        for s in sets:
            args += ["--set", s]
        out = self.run(*args).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]


def find(objects: list[dict], kind: str, name: str | None = None) -> list[dict]:
    """Objects of one kind (and name, when given)."""
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[o['metadata']['name'] for o in found]}"
    return found[0]
