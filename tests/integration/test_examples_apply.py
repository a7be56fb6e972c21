"""Every example study applies with the command its doc shows — `kubectl apply -n <namespace>
-f examples/<file>` (docs/cluster-install.md, "3. Apply a study") — on the real API server with
the CRD installed: no hard-coded namespace, nothing the docs do not list as a prerequisite."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from operator_testkit import crd  # noqa: F401 - the CRD fixture

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (REPO / "examples").rglob("*.yaml")
                  if (yaml.safe_load(p.read_text()) or {}).get("kind") == "ScalingStudy")


def test_there_are_examples():
    assert len(EXAMPLES) >= 4


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: str(p.relative_to(REPO)))
def test_example_applies_as_its_doc_shows(example, crd, namespace, cluster_binaries,  # noqa: F811
                                          kubeconfig_path):
    manifest = yaml.safe_load(example.read_text())
    assert "namespace" not in manifest["metadata"], (
        f"{example.name} hard-codes a namespace; `kubectl apply -n <ns>` would be refused")
    kubectl = [str(cluster_binaries.kubectl), "--kubeconfig", kubeconfig_path]
    done = subprocess.run(kubectl + ["apply", "-n", namespace, "-f", str(example)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "created" in done.stdout
    name = manifest["metadata"]["name"]
    got = subprocess.run(kubectl + ["get", "sst", "-n", namespace, name, "-o", "yaml"],
                         capture_output=True, text=True, check=True)
    stored = yaml.safe_load(got.stdout)
    # what the user wrote is what the API server stored (defaults may be added, nothing dropped)
    for key, value in manifest["spec"].items():
        assert key in stored["spec"], key
    subprocess.run(kubectl + ["delete", "-n", namespace, "-f", str(example), "--wait=false"],
                   capture_output=True, check=True)
