"""An adaptive study on the real control plane (issue 16): the operator starts the seed design,
not the grid; each chosen run's Job says why (annotation + RunChosen Event); after each harvest
the design chooses again, and once its stop rule holds (stopWhen.maxRuns) the runs left are not
needed — the study fits what ran and ends Fitted with status.design done."""

from __future__ import annotations

import pytest

from cluster.waiting import wait_until
from ftscale.api import phases as ph
from ftscale.controller import names

from operator_testkit import (create_study, crd, finish, fit_summary_message,  # noqa: F401
                              get_study, operators, result_message, run_jobs, running_pods,
                              study_manifest)

pytestmark = pytest.mark.cluster

MODELS = ("tiny-1", "tiny-2", "tiny-3")
PARAMS = {m: 1000 * 4 ** i for i, m in enumerate(MODELS)}  # study_manifest's parameters
MAX_RUNS = 7


def planted_loss(pod) -> float:
    labels = pod.metadata.labels
    x, d = PARAMS[labels[names.LABEL_MODEL]], int(labels[names.LABEL_DATA_SIZE])
    return round(40.0 * x ** -0.1 * d ** -0.12 + 1.4, 6)


def test_an_adaptive_study_runs_what_its_design_chooses(crd, operators, namespace, core_api,  # noqa: F811
                                                         batch_api, custom_objects_api):
    manifest = study_manifest("adaptive", models=MODELS, data_sizes=(100, 200, 400, 800),
                              maxParallelRuns=12)
    manifest["spec"]["design"] = {"strategy": "adaptive", "batchSize": 2,
                                  "target": {"kind": "extrapolation"},
                                  "stopWhen": {"maxRuns": MAX_RUNS}}
    operators.start()
    create_study(custom_objects_api, namespace, manifest)
    finished: set[str] = set()

    def finish_running():
        for pod in running_pods(core_api, namespace, "adaptive"):
            if pod.metadata.name not in finished:
                labels = pod.metadata.labels
                finished.add(pod.metadata.name)
                finish(core_api, pod, "adaptive", message=result_message(
                    pod, "adaptive", loss=planted_loss(pod),
                    model_params=PARAMS[labels[names.LABEL_MODEL]]))
        return running_pods(core_api, namespace, "adaptive", "fit")

    first = wait_until(lambda: run_jobs(batch_api, namespace, "adaptive"), 60, "the seed design")
    assert len(first) < 12
    fit_pod = wait_until(finish_running, 180, "the design to stop and the fit to start", interval=1)[0]
    jobs = run_jobs(batch_api, namespace, "adaptive")
    assert len(jobs) == MAX_RUNS  # not the grid's 12
    assert all((j.metadata.annotations or {}).get(names.ANNOTATION_DESIGN_REASON) for j in jobs)
    finish(core_api, fit_pod, "adaptive", message=fit_summary_message("adaptive"))
    study = wait_until(lambda: (s := get_study(custom_objects_api, namespace, "adaptive"))
                       .get("status", {}).get("phase") == "Fitted" and s, 90, "Fitted")
    design = study["status"]["design"]
    assert design["done"] is True and design["notNeeded"] == 12 - MAX_RUNS
    assert study["status"]["runsSucceeded"] == MAX_RUNS
    events = core_api.list_namespaced_event(namespace).items
    chosen = {e.message.split()[1] for e in events if e.reason == ph.EVENT_RUN_CHOSEN}
    assert chosen == {j.metadata.labels[names.LABEL_RUN] for j in jobs}  # "run <id> (...): why"
