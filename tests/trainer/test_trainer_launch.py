"""The launch wrapper (`python -m ftscale_trainer.launch LAUNCHER ...`) gives the pod the run's
own exit code when a multi-process launcher (torchrun) reports only "a worker failed" (1)."""

from __future__ import annotations

import os
import subprocess
import sys

from ftscale.api import outcomes
from ftscale.results import RunResult

PYTHONPATH = os.pathsep.join(p for p in sys.path if p)


def _run(tmp_path, child_code: int, result: RunResult | None):
    term = tmp_path / "termination-log"
    script = "import sys\n"
    if result is not None:
        script += f"open({str(term)!r}, 'w').write({result.to_compact_json()!r})\n"
    script += f"sys.exit({child_code})\n"
    env = dict(os.environ, PYTHONPATH=PYTHONPATH, TERMINATION_MESSAGE_PATH=str(term))
    return subprocess.run([sys.executable, "-m", "ftscale_trainer.launch",
                           sys.executable, "-c", script], env=env).returncode


def _failed(reason: str) -> RunResult:
    return RunResult(study="s", run_id="r", model="m", method="fmt", pet_size=None,
                     data_size=10, seed=0, outcome=outcomes.FAILED, reason=reason,
                     message="rank 0 said so")


def test_a_nan_run_under_torchrun_exits_3_so_the_job_fails_without_retries(tmp_path):
    # torchrun exits 1 when a rank exits 3; rank 0's result says NonFiniteLoss
    assert _run(tmp_path, 1, _failed(outcomes.NON_FINITE_LOSS)) == outcomes.EXIT_NON_FINITE_LOSS
    assert outcomes.EXIT_NON_FINITE_LOSS in outcomes.NON_RETRIABLE_EXIT_CODES


def test_success_and_unexplained_failures_keep_the_launchers_code(tmp_path):
    assert _run(tmp_path, 0, None) == 0
    assert _run(tmp_path, 1, None) == 1  # no result: a crash, retriable
    assert _run(tmp_path, 1, _failed(outcomes.RUNTIME_ERROR)) == outcomes.EXIT_RUNTIME_ERROR
