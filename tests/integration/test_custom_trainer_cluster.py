"""A trainer of your own on the cluster path (docs/run-contract.md): a study whose
`execution.command` runs examples/custom-trainer/train_hf.py (plain Hugging Face Trainer + peft)
goes through the operator's run Job template, the process kubelet runs each pod's command as
written, and the harvest takes the example's results — the same contract as `ftscale run`'s
(tests/e2e/test_custom_trainer.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cluster.waiting import wait_until
from ftscale.controller import names

from operator_testkit import create_study, crd, get_study, operators, run_jobs  # noqa: F401
from test_cluster_e2e import PROCESS_HOLD, _study, process_kubelet  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TRAIN_HF = Path(__file__).resolve().parents[2] / "examples" / "custom-trainer" / "train_hf.py"
STUDY = _study(
    "own-trainer",
    models=[{"name": "tiny-1", "source": "toy:tiny-1"}],
    methods=[{"name": "prompt", "sizes": [4]}],
    dataSizes=[25, 50],
    training={"maxEpochs": 1, "batchSize": 8},
    execution={"maxParallelRuns": 2, "backoffLimit": 0, "labels": PROCESS_HOLD,
               "command": ["python", str(TRAIN_HF)]})


def test_a_trainer_of_your_own_runs_through_the_job_template(
        crd, operators, namespace, process_kubelet, custom_objects_api, batch_api):
    operators.start()
    create_study(custom_objects_api, namespace, STUDY)

    def harvested():
        status = get_study(custom_objects_api, namespace, "own-trainer").get("status") or {}
        return status.get("runsSucceeded", 0) + status.get("runsFailed", 0) == 2 and status
    status = wait_until(harvested, 300, "both runs harvested", interval=1)
    assert status["runsSucceeded"] == 2, status.get("results")
    assert all(0 < r["testLoss"] < 20 for r in status["results"])
    for job in run_jobs(batch_api, namespace, "own-trainer"):
        command = job.spec.template.spec.containers[0].command
        assert command[:2] == ["python", str(TRAIN_HF)] and "--config" in command
    ran = [f for f in process_kubelet.finished if f.name.startswith("own-trainer-")
           and f.component == names.COMPONENT_RUN]
    assert len(ran) == 2 and all(f.exit_code == 0 and f.reported for f in ran)
