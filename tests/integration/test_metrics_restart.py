"""The operator's study gauges survive a restart (any `helm upgrade`): a scrape after the
restart shows the same test-loss, fit-parameter and run-phase series as before it — before any
new result arrives — so dashboards do not empty out and the no-progress alert can still fire."""

from __future__ import annotations

import signal

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cluster.waiting import wait_until

from operator_testkit import (condition, create_study, crd, finish, fit_summary_message,  # noqa: F401
                              get_study, operators, running_pods, study_manifest)

pytestmark = pytest.mark.cluster

# Gauges a restart must rebuild from the cluster's state (counters restart from zero by design,
# and the progress timestamp is the restart's view of the last transition).
REBUILT = ("ftscale_run_test_loss", "ftscale_fit_parameter", "ftscale_study_runs",
           "ftscale_study_runs_expected", "ftscale_study_fitted")


def _series(text: str, study: str) -> dict:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in REBUILT and s.labels.get("study") == study:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_study_gauges_are_the_same_after_an_operator_restart(crd, operators, namespace,  # noqa: F811
                                                             core_api, custom_objects_api):
    first = operators.start(identity="op-1")
    create_study(custom_objects_api, namespace,
                 study_manifest("restart", models=("tiny-1", "tiny-2", "tiny-3"),
                                data_sizes=(100, 200, 400, 800), maxParallelRuns=12))
    pods = wait_until(lambda: len(p := running_pods(core_api, namespace, "restart")) == 12 and p,
                      120, "12 running run pods")
    for pod in pods:
        finish(core_api, pod, "restart")
    fit_pod = wait_until(lambda: running_pods(core_api, namespace, "restart", "fit"), 120,
                         "the fit pod")[0]
    finish(core_api, fit_pod, "restart", message=fit_summary_message("restart"))
    wait_until(lambda: (condition(get_study(custom_objects_api, namespace, "restart"), "Fitted")
                        or {}).get("status") == "True", 90, "Fitted")
    before = wait_until(lambda: (s := _series(first.metrics(), "restart"))
                        and any(k[0] == "ftscale_fit_parameter" for k in s) and s, 30,
                        "fit gauges")
    assert any(k[0] == "ftscale_run_test_loss" for k in before)
    first.stop(signal.SIGTERM)

    second = operators.start(identity="op-2")
    after = wait_until(lambda: (s := _series(second.metrics(), "restart")) == before and s, 60,
                       "the same series after the restart")
    assert after == before
