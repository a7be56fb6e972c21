"""A GPU-hour budget stops a study on the real control plane: runs start while the cost plan's
estimates fit `spec.budget.gpuHours`, then BudgetExhausted turns True, no other Job is created,
and once the started runs finished the study fits what finished."""

from __future__ import annotations

import pytest

from cluster.waiting import wait_until
from ftscale.controller.desired import desired_runs

from operator_testkit import (condition, create_study, crd, finish, fit_summary_message,  # noqa: F401
                              get_study, operators, run_jobs, running_pods, study_manifest)

pytestmark = pytest.mark.cluster


def test_a_budget_stops_the_study_and_it_fits_what_finished(crd, operators, namespace,  # noqa: F811
                                                            core_api, batch_api,
                                                            custom_objects_api, kwok_gpu_nodes):
    manifest = study_manifest("budget", models=("tiny-1", "tiny-2", "tiny-3"),
                              data_sizes=(100, 200, 400, 800), maxParallelRuns=12, gpusPerRun=1)
    runs = desired_runs("budget", manifest["spec"])
    assert all(r.gpu_hours for r in runs)
    # enough for the first 9 runs of the grid (in grid order), not the 10th
    manifest["spec"]["budget"] = {"gpuHours": sum(r.gpu_hours for r in runs[:9]) * 1.001}
    operators.start()
    create_study(custom_objects_api, namespace, manifest)

    def exhausted():
        study = get_study(custom_objects_api, namespace, "budget")
        return (condition(study, "BudgetExhausted") or {}).get("status") == "True" and study
    study = wait_until(exhausted, 60, "BudgetExhausted")
    assert "3 run(s) not started" in condition(study, "BudgetExhausted")["message"]
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "budget")) == 9 and p,
                      120, "9 running run pods")
    assert len(run_jobs(batch_api, namespace, "budget")) == 9
    for pod in pods:
        finish(core_api, pod, "budget")
    fit_pod = wait_until(lambda: running_pods(core_api, namespace, "budget", "fit"), 120,
                         "the fit of what finished")[0]
    finish(core_api, fit_pod, "budget", message=fit_summary_message("budget"))
    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "budget"))
                       .get("status", {}).get("phase") == "Fitted" and s, 90, "Fitted")
    status = study["status"]
    assert status["runsSucceeded"] == 9 and status["plan"]["notStarted"] == 3
    assert condition(study, "BudgetExhausted")["status"] == "True"
    assert len(run_jobs(batch_api, namespace, "budget")) == 9  # none created after the stop
