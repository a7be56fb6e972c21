"""`pip install .` gives a working `ftscale` command outside the checkout: the console scripts,
the packaged CRD (ftscale/crds/scalingstudy.yaml, which `ftscale run` validates against) and the
report templates travel with the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_installed_ftscale_validates_and_plans_a_study_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(REPO)],
                   check=True, cwd=tmp_path, capture_output=True)
    assert (target / "ftscale" / "crds" / "scalingstudy.yaml").is_file()
    assert not (target / "ftscale" / "crds" / "scalingstudy.yaml").is_symlink()
    study = tmp_path / "study.yaml"
    study.write_text((REPO / "examples" / "demo-study.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FTSCALE_CRD")}
    env["PYTHONPATH"] = str(target)
    script = [sys.executable, str(target / "bin" / "ftscale")]
    out = subprocess.run(script + ["run", str(study), "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert str(REPO) not in out.stdout + out.stderr  # nothing read from the checkout
    bad = tmp_path / "bad.yaml"
    bad.write_text(study.read_text().replace("dataSizes:", "dataSizes: [50, 50]\n  x_dataSizes:", 1))
    out = subprocess.run(script + ["run", str(bad), "--dry-run"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "spec" in out.stderr + out.stdout
