"""`ftscale run` and the operator agree on the same results: the same status.fit and the same
study metrics (labels, aggregation, values). Every document crossing a process boundary here is
the producer's real output (tests/producers.py): the trainer's termination messages, the fit
Job's summary."""

from __future__ import annotations

import copy
from dataclasses import replace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ftscale.api import outcomes as oc
from ftscale.api.fit_summary import FitSummary
from ftscale.controller import names
from ftscale.controller.desired import desired_runs
from ftscale.controller.metrics import OperatorMetrics
from ftscale.controller.plan import plan
from ftscale.local.metrics import LocalMetrics
from ftscale.local.report import fit_results
from ftscale.spec import Study, with_defaults
from ftscale.study_metrics import STUDY_METRICS

from controller_testkit import FIT_SPEC, NOW, SETTINGS, STUDY, job, pod
from producers import fit_job_message, planted_results, trainer_message

SPEC = {**copy.deepcopy(FIT_SPEC), "seeds": [0, 1]}


def _results():
    """Planted results of SPEC's grid with one run failed (NaN loss, as the trainer reports)."""
    results = planted_results(STUDY.name, SPEC)
    results[5] = replace(results[5], outcome=oc.FAILED, reason=oc.NON_FINITE_LOSS,
                         test_loss=None, message="train loss is nan at step 3")
    return results


def _operator_pass(results):
    """Two reconcile passes over Jobs whose pods carry the trainer's messages, then the fit
    Job's pod carrying the fit Job's message: the status and metrics the operator ends with."""
    runs = desired_runs(STUDY.name, SPEC)
    by_id = {r.run_id: r for r in results}
    jobs, pods = [], []
    for run in runs:
        result = by_id[run.run_id]
        finished = "Complete" if result.ok else "Failed"
        j = job(run, finished=finished, reason=None if result.ok else "PodFailurePolicy")
        jobs.append(j)
        pods.append(pod(j.name, run, phase="Succeeded" if result.ok else "Failed",
                        exit_code=oc.exit_code_for(result.reason),
                        message=trainer_message(result)))
    spec = with_defaults(copy.deepcopy(SPEC))
    metrics = OperatorMetrics()
    first = plan(STUDY, spec, {}, runs, jobs, pods, NOW, SETTINGS)
    metrics.observe_plan(STUDY.namespace, STUDY.name, first, NOW)
    assert first.fit_job is not None
    fit_name = first.fit_job["metadata"]["name"]
    fit = job(None, component=names.COMPONENT_FIT, name=fit_name, finished="Complete",
              annotations={names.ANNOTATION_FIT_DIGEST: first.fit_input["inputDigest"]})
    message = fit_job_message(STUDY.name, SPEC, results)
    # the run Jobs may be gone: their results are recorded in the results ConfigMaps
    done = plan(STUDY, spec, first.status, runs, [fit], [pod(fit_name, message=message)], NOW,
                SETTINGS, recorded=first.new_results)
    metrics.observe_plan(STUDY.namespace, STUDY.name, done, NOW)
    return done, metrics


def _local(results):
    study = Study(name=STUDY.name, namespace=STUDY.namespace,
                  spec=with_defaults(copy.deepcopy(SPEC)), manifest={})
    study_fit, notes = fit_results(study, results)
    assert study_fit is not None, notes
    metrics = LocalMetrics(STUDY.name)
    counts = {"Succeeded": sum(r.ok for r in results), "Failed": sum(not r.ok for r in results)}
    metrics.set_counts(counts, len(results))
    for r in results:
        metrics.run_finished(r)
    metrics.fit_done(study_fit.summary())
    return study_fit.summary(), metrics


def _series(registry, namespace):
    """{(name, labels without namespace): value} of the study series of one scrape."""
    out = {}
    text = generate_latest(registry).decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            base = s.name.removesuffix("_total")
            if base not in {n.removesuffix("_total") for n in STUDY_METRICS} or \
                    s.labels.get("namespace") != namespace or \
                    "last_progress" in s.name:  # a wall-clock time, different by nature
                continue
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "namespace"))
            out[(s.name, labels)] = s.value
    return out


def test_local_and_cluster_give_the_same_fit_and_metrics():
    results = _results()
    done, op_metrics = _operator_pass(results)
    local_summary, local_metrics = _local(results)

    # the same status.fit: the operator's is the fit Job's summary, ftscale run's its own fit
    assert done.status["fit"]["phase"] == "Succeeded"
    assert FitSummary.parse(done.status["fit"]) == local_summary
    assert local_summary.laws and not local_summary.skipped

    # the same series, label for label and value for value
    op = _series(op_metrics.registry, STUDY.namespace)
    local = _series(local_metrics.registry, "local")
    assert op == local
    names_seen = {name for name, _ in op}
    assert {"ftscale_run_test_loss", "ftscale_fit_parameter", "ftscale_run_failures_total",
            "ftscale_study_runs", "ftscale_study_fitted"} <= names_seen
    # the test loss is the mean over the two seeds, pet_size "none" for fmt, in both
    fmt = [(labels, v) for (name, labels), v in op.items() if name == "ftscale_run_test_loss"
           and ("method", "fmt") in labels]
    assert fmt and all(("pet_size", "none") in labels for labels, _ in fmt)
    by_id = {r.run_id: r for r in results}
    one = next(r for r in results if r.method == "fmt" and r.ok and r.seed == 0)
    other = next(r for r in by_id.values() if r.ok and r.seed == 1 and
                 (r.model, r.method, r.data_size) == (one.model, one.method, one.data_size))
    labels = tuple(sorted({"model": one.model, "method": "fmt", "pet_size": "none",
                           "data_size": str(one.data_size), "study": STUDY.name}.items()))
    assert op[("ftscale_run_test_loss", labels)] == (one.test_loss + other.test_loss) / 2
