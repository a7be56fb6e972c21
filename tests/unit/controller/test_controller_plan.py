"""plan(): the reconcile decision, without a cluster."""

from __future__ import annotations

import pytest

from ftscale import results as rc
from ftscale.api import results_store
from ftscale.api.status import RECENT_FAILURES
from ftscale.controller import conditions as cond
from ftscale.controller import names
from ftscale.identity import job_name
from ftscale.api.fit_summary import FitSummary
from ftscale.api.status import entry_from_result as status_entry
from ftscale.controller.plan import Plan, plan

from controller_testkit import (NOW, SETTINGS, STUDY, fit_summary, job, pod, result, runs, spec,
                               succeeded, trainer_message)


def run_plan(s=None, status=None, jobs=(), pods=(), now=NOW, **kw) -> Plan:
    s = s or spec()
    return plan(STUDY, s, status, runs(s), jobs, pods, now, SETTINGS, **kw)


def conditions_of(p: Plan) -> dict[str, dict]:
    return {c["type"]: c for c in p.status["conditions"]}


def kept(*plans: Plan) -> dict[str, rc.RunResult]:
    """What the results ConfigMaps hold after these passes (the reconciler writes each pass's
    new_results there before any TTL): the `recorded=` of the next pass."""
    out: dict[str, rc.RunResult] = {}
    for p in plans:
        out.update(p.new_results)
    return out


def failures_of(p: Plan) -> dict[str, dict]:
    return {e["runId"]: e for e in p.status["recentFailures"]}


def test_fresh_study_creates_up_to_max_parallel_runs_with_deterministic_names():
    grid = runs()
    assert len(grid) == 8
    p = run_plan()
    created = [m["metadata"]["name"] for m in p.create_jobs]
    assert created == [job_name(STUDY.name, r.key) for r in grid[:3]]
    assert p.status["runsQueued"] == 3 and p.status["runsPending"] == 5 and p.status["runsTotal"] == 8
    assert p.status["progress"] == "0/8" and p.status["phase"] == "Running"
    c = conditions_of(p)
    assert c["Progressing"]["status"] == "True" and c["Progressing"]["reason"] == cond.RUNS_IN_PROGRESS
    assert c["Progressing"]["observedGeneration"] == 1
    assert c["Fitted"]["status"] == "False" and c["Succeeded"]["status"] == "False"
    # the same world gives the same plan: nothing random
    assert [m["metadata"]["name"] for m in run_plan().create_jobs] == created


def test_jobs_created_but_not_yet_cached_count_against_parallelism():
    grid = runs()
    lagging = {job_name(STUDY.name, r.key) for r in grid[:3]}
    p = run_plan(pending_creates=lagging)
    assert p.create_jobs == []
    # one of them shows up in the cache, two still lagging: still no room
    p = run_plan(jobs=[job(grid[0])], pending_creates=lagging - {job_name(STUDY.name, grid[0].key)})
    assert p.create_jobs == []


def test_running_and_suspended_jobs_are_reported_running_and_queued():
    grid = runs()
    running = job(grid[0])
    queued = job(grid[1], suspended=True)
    p = run_plan(jobs=[running, queued], pods=[pod(running.name, grid[0], phase="Running")])
    assert p.run_phases[grid[0].run_id] == "Running"
    assert p.run_phases[grid[1].run_id] == "Queued"
    assert p.status["runsRunning"] == 1
    assert len(p.create_jobs) == 1  # 3 slots - 2 active


def test_finished_job_is_harvested_into_the_results_configmap_and_then_gets_its_ttl():
    grid = runs()
    j, pd = succeeded(grid[0], loss=2.25)
    p = run_plan(spec(ttlSecondsAfterFinished=60), jobs=[j], pods=[pd])
    assert [h.run_id for h in p.harvested] == [grid[0].run_id]
    assert list(p.new_results) == [grid[0].run_id] and p.results == [p.new_results[grid[0].run_id]]
    got = p.new_results[grid[0].run_id]
    assert got.run_id == grid[0].run_id and got.outcome == "Succeeded" and got.test_loss == 2.25
    value = results_store.encode(got)  # the ConfigMap value
    assert "test_ppl" not in value and '"pet_size":null' in value  # None left out but identity
    assert rc.parse_result(value).test_loss == 2.25
    assert p.ttl_patches == [(j.name, 60)]
    assert p.status["runsSucceeded"] == 1 and p.status["progress"] == "1/8"
    assert "results" not in p.status and p.status["recentFailures"] == []


def test_no_ttl_patch_when_the_spec_keeps_jobs():
    grid = runs()
    j, pd = succeeded(grid[0])
    assert run_plan(jobs=[j], pods=[pd]).ttl_patches == []


def test_finished_job_without_cached_pod_waits_then_fails_with_result_missing():
    grid = runs()
    j = job(grid[0], finished="Complete", at=NOW - 5)
    p = run_plan(jobs=[j])
    assert p.waiting and p.harvested == [] and p.new_results == {} and p.results == []
    assert p.ttl_patches == [] and p.status["runsSucceeded"] + p.status["runsFailed"] == 0
    late = run_plan(jobs=[job(grid[0], finished="Complete", at=NOW - 60)])
    assert late.new_results[grid[0].run_id].reason == "ResultMissing"
    assert failures_of(late)[grid[0].run_id]["reason"] == "ResultMissing"


def test_a_recorded_result_survives_job_deletion_and_is_never_rerun():
    grid = runs()
    j, pd = succeeded(grid[0])
    first = run_plan(jobs=[j], pods=[pd])
    # operator restarts after TTL deleted the Job: only the results ConfigMaps remember the run
    again = run_plan(status=first.status, recorded=kept(first))
    assert [r.run_id for r in again.results] == [grid[0].run_id]
    assert again.status["runsSucceeded"] == 1 and again.run_phases[grid[0].run_id] == "Succeeded"
    created = {m["metadata"]["labels"][names.LABEL_RUN] for m in again.create_jobs}
    assert grid[0].run_id not in created
    assert again.harvested == [] and again.new_results == {}
    # without the record (another study's shards, say) the run would be started again
    forgotten = run_plan(status=first.status)
    assert grid[0].run_id in {m["metadata"]["labels"][names.LABEL_RUN] for m in forgotten.create_jobs}


def test_failure_reasons_from_job_and_pod_status():
    grid = runs()
    oom = job(grid[0], finished="Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
    bad = job(grid[1], finished="Failed", reason="PodFailurePolicy", message="Container trainer for pod exited with 2")
    late = job(grid[2], finished="Failed", reason="DeadlineExceeded", message="Job was active longer than specified deadline")
    nan = job(grid[3], finished="Failed", reason="BackoffLimitExceeded")
    pods = [
        pod(oom.name, grid[0], phase="Failed", exit_code=137, reason="OOMKilled"),
        pod(bad.name, grid[1], phase="Failed", exit_code=2, message="config: unknown key 'lr'"),
        pod(nan.name, grid[3], phase="Failed", exit_code=1,
            message=result(grid[3], outcome=rc.FAILED, reason=rc.NON_FINITE_LOSS, test_loss=None,
                           message="loss is nan at step 12").to_compact_json()),
    ]
    p = run_plan(jobs=[oom, bad, late, nan], pods=pods)
    reasons = {rid: r.reason for rid, r in p.new_results.items()}
    assert reasons == {grid[0].run_id: rc.OOM_KILLED, grid[1].run_id: rc.INVALID_CONFIG,
                       grid[2].run_id: rc.DEADLINE_EXCEEDED, grid[3].run_id: rc.NON_FINITE_LOSS}
    assert "unknown key" in p.new_results[grid[1].run_id].message
    # the status lists them too (fewer than RECENT_FAILURES): kubectl describe shows why
    assert {rid: e["reason"] for rid, e in failures_of(p).items()} == reasons
    assert "unknown key" in failures_of(p)[grid[1].run_id]["message"]
    warnings = [e for e in p.events if e.type == "Warning" and e.reason == "RunFailed"]
    assert len(warnings) == 4 and any("OOMKilled" in e.message for e in warnings)
    assert p.status["runsFailed"] == 4


def test_backoff_limit_after_plain_crashes_keeps_the_log_tail():
    grid = runs()
    j = job(grid[0], finished="Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
    pods = [pod(j.name, grid[0], phase="Failed", exit_code=1, message=f"Traceback ...\nRuntimeError: CUDA error {i}",
                index=i, at=NOW - 10 + i) for i in range(3)]
    got = run_plan(jobs=[j], pods=pods).new_results[grid[0].run_id]
    assert got.reason == rc.BACKOFF_LIMIT_EXCEEDED and "CUDA error 2" in got.message


def test_a_result_of_another_run_is_rejected():
    grid = runs()
    j = job(grid[0], finished="Complete")
    wrong = pod(j.name, grid[0], message=result(grid[1]).to_compact_json())
    got = run_plan(jobs=[j], pods=[wrong]).new_results[grid[0].run_id]
    assert got.outcome == "Failed" and got.reason == "BadResult"


def _all_done(s, loss=2.0):
    grid = runs(s)
    jobs, pods = [], []
    for i, r in enumerate(grid):
        j, pd = succeeded(r, loss + i * 0.01)
        jobs.append(j)
        pods.append(pd)
    return grid, jobs, pods


def test_every_run_terminal_creates_the_fit_input_and_job_once():
    s = spec()
    grid, jobs, pods = _all_done(s)
    p = run_plan(s, jobs=jobs, pods=pods)
    assert p.status["runsSucceeded"] == 8 and p.fit_job is not None
    fit_name = p.fit_job["metadata"]["name"]
    assert p.fit_job["metadata"]["labels"][names.LABEL_COMPONENT] == "fit"
    # the law job's input (ftscale.grid.fit_job_input): model-size factor of fmt and lora
    assert {r["run_id"] for r in p.fit_input["results"]} == {r.run_id for r in grid}
    assert {t["factor"] for t in p.fit_input["factors"]["fmt"]} == {"model_size"}
    assert p.fit_input["factors"]["fmt"][0]["x_column"] == "model_params"
    from ftscale.law.job import build_factors
    tables, counts = build_factors(p.fit_input)
    assert len(tables["fmt"][0].rows) == 4 and counts["failed_runs_skipped"] == 0
    assert p.status["phase"] == "Fitting"
    # next pass: the results ConfigMaps have the results, Jobs may be gone; fit Job exists
    fit_running = job(None, component=names.COMPONENT_FIT, name=fit_name)
    again = run_plan(s, status=p.status, jobs=[fit_running], recorded=kept(p))
    assert again.fit_job is None and again.create_jobs == []
    assert conditions_of(again)["Fitted"]["reason"] == cond.FIT_IN_PROGRESS
    # the fit Job finishes with its summary in the termination message
    fit_done = job(None, component=names.COMPONENT_FIT, name=fit_name, finished="Complete",
                   annotations={names.ANNOTATION_FIT_DIGEST: p.fit_input["inputDigest"]})
    fit_pod = pod(fit_name, message=fit_summary())
    done = run_plan(s, status=again.status, jobs=[fit_done], pods=[fit_pod], recorded=kept(p))
    c = conditions_of(done)
    assert c["Fitted"]["status"] == "True" and c["Succeeded"]["status"] == "True"
    assert c["Progressing"]["status"] == "False" and c["Failed"]["status"] == "False"
    assert done.status["phase"] == "Fitted" and done.status["fit"]["phase"] == "Succeeded"
    summary = FitSummary.parse(fit_summary())
    fmt = next(law for law in summary.laws if law.method == "fmt" and law.form == "multiplicative")
    assert FitSummary.parse(done.status["fit"]).laws == summary.laws
    assert abs(fmt.params["alpha"] - 0.12) < 0.03  # the planted law (tests/producers.py)
    assert any(e.reason == "Fitted" for e in done.events)
    # and after that the study is at rest: no writes
    rest = run_plan(s, status=done.status, recorded=kept(p))
    assert not rest.status_changed and rest.create_jobs == [] and rest.fit_job is None and rest.events == []


def test_extending_the_grid_adds_runs_and_refits_with_a_new_fit_job():
    s = spec()
    grid, jobs, pods = _all_done(s)
    p = run_plan(s, jobs=jobs, pods=pods)
    old_fit = p.fit_job["metadata"]["name"]
    status = dict(p.status, fit={"phase": "Succeeded", "inputDigest": p.fit_input["inputDigest"], "job": old_fit})
    bigger = spec()
    bigger["dataSizes"] = [100, 200, 400]
    q = plan(STUDY, bigger, status, runs(bigger), [], [], NOW, SETTINGS, recorded=kept(p))
    assert q.status["runsTotal"] == 12 and q.status["runsSucceeded"] == 8
    assert len(q.create_jobs) == 3 and all(m["metadata"]["labels"][names.LABEL_DATA_SIZE] == "400" for m in q.create_jobs)
    assert conditions_of(q)["Fitted"]["status"] == "False" and q.status["fit"]["job"] == old_fit
    grid2, jobs2, pods2 = _all_done(bigger)
    r = plan(STUDY, bigger, q.status, runs(bigger), jobs2, pods2, NOW, SETTINGS, recorded=kept(p))
    assert r.fit_job is not None and r.fit_job["metadata"]["name"] != old_fit
    # the 8 recorded runs are not harvested again; only the 4 new ones are
    assert set(r.new_results) == {x.run_id for x in runs(bigger)} - set(kept(p))
    assert len(r.results) == 12 and len(r.fit_input["results"]) == 12


def test_failures_beyond_max_failed_runs_degrade_stop_new_runs_and_fail_the_study():
    s = spec(maxFailedRuns=0)
    grid = runs(s)
    failed = job(grid[0], finished="Failed", reason="BackoffLimitExceeded")
    still = job(grid[1])
    p = run_plan(s, jobs=[failed, still], pods=[pod(failed.name, grid[0], phase="Failed", exit_code=1)])
    c = conditions_of(p)
    assert c["Degraded"]["status"] == "True" and c["Degraded"]["reason"] == cond.TOO_MANY_FAILED_RUNS
    assert p.create_jobs == [] and c["Failed"]["status"] == "False"  # one run still going
    q = run_plan(s, status=p.status, jobs=[failed, job(grid[1], finished="Complete")],
                 pods=[pod(still.name, grid[1], message=result(grid[1]).to_compact_json())])
    c = conditions_of(q)
    assert c["Failed"]["status"] == "True" and c["Failed"]["reason"] == cond.TOO_MANY_FAILED_RUNS
    assert q.fit_job is None and q.status["phase"] == "Failed" and c["Progressing"]["status"] == "False"


def test_default_budget_never_degrades():
    grid = runs()
    failed = job(grid[0], finished="Failed", reason="BackoffLimitExceeded")
    p = run_plan(jobs=[failed])
    assert conditions_of(p)["Degraded"]["status"] == "False" and len(p.create_jobs) == 3


def test_invalid_spec_fails_the_study_with_the_reason():
    p = plan(STUDY, spec(), {}, None, [], [], NOW, SETTINGS, spec_error="cannot expand the grid: boom")
    c = conditions_of(p)
    assert c["Failed"]["status"] == "True" and c["Failed"]["reason"] == cond.INVALID_SPEC
    assert "boom" in c["Failed"]["message"] and p.create_jobs == []


def test_jobs_of_runs_dropped_from_the_grid_are_deleted_if_unfinished():
    s = spec()
    grid = runs(s)
    smaller = spec()
    smaller["dataSizes"] = [100]
    dropped = [r for r in grid if r.key.data_size == 200]
    jobs = [job(dropped[0]), job(dropped[1], finished="Complete")]
    p = plan(STUDY, smaller, {}, runs(smaller), jobs, [], NOW, SETTINGS)
    assert p.delete_jobs == [jobs[0].name]


def test_conditions_keep_their_transition_time_while_unchanged():
    p = run_plan(now=NOW)
    q = run_plan(status=p.status, now=NOW + 100)
    t1 = {c["type"]: c["lastTransitionTime"] for c in p.status["conditions"]}
    t2 = {c["type"]: c["lastTransitionTime"] for c in q.status["conditions"]}
    assert t1 == t2


def test_deleting_study_creates_nothing():
    p = run_plan(deleting=True)
    assert p.create_jobs == [] and p.fit_job is None


def test_status_entries_stay_small_at_two_thousand_runs():
    grid = runs()
    r = result(grid[1], outcome=rc.FAILED, reason=rc.RUNTIME_ERROR, test_loss=None, message="x" * 5000)
    entry = status_entry(r)
    import json
    assert len(json.dumps(entry)) < 500
    ok = status_entry(result(grid[1]))
    # 2,000 entries stay far below etcd's 1.5 MB object limit
    assert len(json.dumps(ok)) * 2000 < 600_000


def test_a_succeeded_pod_is_harvested_before_the_job_controller_marks_the_job_complete():
    grid = runs()
    j = job(grid[0])  # not finished yet
    p = run_plan(spec(ttlSecondsAfterFinished=30), jobs=[j],
                 pods=[pod(j.name, grid[0], message=result(grid[0], 2.0).to_compact_json())])
    assert [h.run_id for h in p.harvested] == [grid[0].run_id]
    assert p.status["runsSucceeded"] == 1 and p.ttl_patches == [(j.name, 30)]
    # its parallelism slot is free at once: 3 new Jobs, not 2
    assert len(p.create_jobs) == 3


def test_a_failed_pod_of_an_unfinished_job_waits_for_the_jobs_verdict():
    grid = runs()
    j = job(grid[0])
    p = run_plan(jobs=[j], pods=[pod(j.name, grid[0], phase="Failed", exit_code=1, message="boom")])
    assert p.harvested == [] and p.run_phases[grid[0].run_id] in ("Queued", "Running")


def test_a_shard_holds_hundreds_of_full_results_and_stays_far_below_a_mebibyte():
    grid = runs()
    full = result(grid[0], generation={"bleu": 12.3456}, tokens_seen=123456789, steps=20000,
                  total_params=1234567890, trainable_params=1234567, device="cuda:NVIDIA H100 80GB HBM3 x8")
    p = run_plan(jobs=[job(grid[0], finished="Complete")],
                 pods=[pod(job_name("demo", grid[0].key), grid[0], message=full.to_compact_json())])
    value = results_store.encode(p.new_results[grid[0].run_id])
    assert rc.parse_result(value).generation == {"bleu": 12.3456}  # slim, but still the contract
    entry = len(results_store.key(grid[0].run_id)) + len(value)
    # a shard closes at SHARD_MAX_BYTES: one more pass's batch (a few hundred runs) stays < 1 MiB
    assert results_store.SHARD_MAX_BYTES + 500 * entry < 1024 * 1024
    # and holds enough results that a 10,000-run study reads back in under 40 ConfigMaps
    assert results_store.SHARD_MAX_BYTES // entry >= 250


def test_fit_digest_ignores_how_json_spells_a_number():
    from ftscale.controller.plan import fit_input_digest
    grid = runs()
    value = results_store.encode(result(grid[0], loss=2.0))
    a = [rc.parse_result(value)]
    b = [rc.parse_result(value.replace('"test_loss":2.0', '"test_loss":2'))]  # as JSON may say it
    assert '"test_loss":2.0' in value and b[0].test_loss == 2 and type(b[0].test_loss) is int
    assert fit_input_digest(spec(), a) == fit_input_digest(spec(), b)
    assert fit_input_digest(spec(), a) != fit_input_digest(spec(), [result(grid[0], loss=2.1)])
    # the order the results come in does not matter either (shards are read in any order)
    two = [result(grid[0]), result(grid[1], loss=3.0)]
    assert fit_input_digest(spec(), two) == fit_input_digest(spec(), two[::-1])


def test_the_fit_is_harvested_as_soon_as_its_pod_exits_zero():
    s = spec()
    grid, jobs, pods = _all_done(s)
    p = run_plan(s, jobs=jobs, pods=pods)
    name = p.fit_job["metadata"]["name"]
    running = job(None, component=names.COMPONENT_FIT, name=name,
                  annotations={names.ANNOTATION_FIT_DIGEST: p.fit_input["inputDigest"]})
    q = run_plan(s, status=p.status, jobs=[running], pods=[pod(name, message=fit_summary())],
                 recorded=kept(p))
    assert conditions_of(q)["Fitted"]["status"] == "True" and q.status["fit"]["job"] == name
    # a failing fit pod alone is not a verdict (the Job may retry)
    r = run_plan(s, status=p.status, jobs=[running], pods=[pod(name, phase="Failed", exit_code=1, message="x")],
                 recorded=kept(p))
    assert conditions_of(r)["Fitted"]["reason"] == cond.FIT_IN_PROGRESS


def test_a_new_fit_replaces_every_field_of_a_failed_one():
    """status.fit after a failed fit and then a successful one carries nothing of the failure:
    the status write is a merge patch, so every key the new fit lacks must be written as null."""
    s = spec()
    grid, jobs, pods = _all_done(s)
    p = run_plan(s, jobs=jobs, pods=pods)
    name = p.fit_job["metadata"]["name"]
    annotations = {names.ANNOTATION_FIT_DIGEST: p.fit_input["inputDigest"]}
    failed_job = job(None, component=names.COMPONENT_FIT, name=name, finished="Failed",
                     reason="PodFailurePolicy", annotations=annotations)
    failed = run_plan(s, status=p.status, jobs=[failed_job],
                      pods=[pod(name, phase="Failed", exit_code=2,
                                message="ftscale fit job: no factor of any method could be fitted")],
                      recorded=kept(p))
    assert failed.status["fit"]["phase"] == "Failed"
    assert failed.status["fit"]["reason"] == "NothingToFit"
    assert conditions_of(failed)["Failed"]["status"] == "True"
    assert conditions_of(failed)["Succeeded"]["reason"] == cond.STUDY_TERMINAL_FAILED
    # the same results fitted again (say after a law-option change), this time successfully
    ok_job = job(None, component=names.COMPONENT_FIT, name=name, finished="Complete",
                 annotations=annotations)
    stale = dict(failed.status, fit={k: v for k, v in failed.status["fit"].items()
                                     if v is not None})  # as the API server stores it
    stale["fit"]["phase"] = None  # a new Job for the same digest: harvest it again
    ok = run_plan(s, status={**stale, "fit": {**stale["fit"], "inputDigest": "other"}},
                  jobs=[ok_job], pods=[pod(name, message=fit_summary())], recorded=kept(p))
    fit = ok.status["fit"]
    assert fit["phase"] == "Succeeded" and fit["laws"]
    assert "reason" in fit and fit["reason"] is None  # null in the merge patch: removed
    assert "fit Job" not in (fit["message"] or "") and "could be fitted" not in fit["message"]
    c = conditions_of(ok)
    assert c["Fitted"]["status"] == "True" and "could be fitted" not in c["Fitted"]["message"]


def test_a_budget_starts_runs_while_they_fit_then_fits_what_finished():
    """spec.budget.gpuHours: runs start in grid order while spent + under way + next stay within
    it (estimates from the cost plan); then BudgetExhausted, and once nothing runs, the fit."""
    s = spec(maxParallelRuns=20)
    grid = runs(s)
    priced = [r for r in grid if r.gpu_hours]
    assert priced, "the GPU model's runs are priced by the cost plan"
    first_two = sum(r.gpu_hours for r in priced[:2])
    s["budget"] = {"gpuHours": first_two * 1.01}
    p = run_plan(s)
    created = {j["metadata"]["name"] for j in p.create_jobs}
    blocked = [r for r in grid if r.job_name not in created]
    assert blocked and conditions_of(p)["BudgetExhausted"]["status"] == "True"
    assert p.status["plan"]["notStarted"] == len(blocked)
    assert p.status["plan"]["gpuHours"] == pytest.approx(sum(r.gpu_hours for r in priced), rel=1e-5)
    # every started run finishes (its GPU time measured): nothing runs, so the study fits
    started = [r for r in grid if r.job_name in created]
    jobs, pods = [], []
    for r in started:
        j, pd = succeeded(r)
        jobs.append(j)
        pods.append(pd)
    q = run_plan(s, status=p.status, jobs=jobs, pods=pods)
    assert q.create_jobs == [] and q.fit_job is not None
    assert conditions_of(q)["BudgetExhausted"]["status"] == "True"
    assert q.status["gpuHoursSpent"] > 0  # wall seconds × GPUs of the GPU runs
    # raising the budget starts the rest
    s["budget"] = {"gpuHours": 1e9}
    r = run_plan(s, status=q.status, jobs=jobs, pods=pods)
    assert len(r.create_jobs) == len(blocked) and conditions_of(r)["BudgetExhausted"]["status"] == "False"


def test_a_study_whose_runs_cannot_fit_their_gpus_is_rejected_before_any_job_starts():
    from ftscale.controller.desired import StudyRejected, desired_runs

    s = spec(gpuMemoryGiB=80)
    s["models"] = [{"name": "big", "source": "meta-llama/Llama-2-7b-hf",
                    "parameters": 6_476_271_616, "gpus": 1}]
    s["methods"] = [{"name": "fmt"}]
    with pytest.raises(StudyRejected, match="cannot fit"):
        desired_runs(STUDY.name, s)
    # the reconciler reports it as InvalidSpec: the study fails with that message, no Job
    p = plan(STUDY, s, {}, None, [], [], NOW, SETTINGS, spec_error="runs that cannot fit ...")
    assert p.create_jobs == [] and conditions_of(p)["Failed"]["reason"] == cond.INVALID_SPEC
    s["models"][0]["gpus"] = 4  # sharded over 4 GPUs it fits
    assert desired_runs(STUDY.name, s)


def test_a_result_is_taken_only_when_it_is_this_runs_and_its_numbers_are_finite():
    """The harvest distrusts the pod: a result with another run's identity (same run id, other
    data size) or a NaN loss is recorded as BadResult — never copied into the status."""
    import dataclasses
    import json as _json

    s = spec()
    grid = runs(s)
    forged = dataclasses.replace(result(grid[0]), data_size=grid[0].key.data_size + 1)
    j = job(grid[0], finished="Complete")
    p = run_plan(s, jobs=[j], pods=[pod(j.name, grid[0], message=forged.to_compact_json())])
    got = p.new_results[grid[0].run_id]
    assert got.outcome == "Failed" and got.reason == "BadResult"
    assert got.data_size == grid[0].key.data_size  # the run's own, not the pod's
    assert failures_of(p)[grid[0].run_id]["dataSize"] == grid[0].key.data_size
    nan = _json.loads(result(grid[0]).to_compact_json())
    text = _json.dumps(nan).replace('"test_loss": 2.5', '"test_loss": NaN')
    assert "NaN" in text
    p = run_plan(s, jobs=[j], pods=[pod(j.name, grid[0], message=text)])
    got = p.new_results[grid[0].run_id]
    assert got.reason == "BadResult" and got.test_loss is None
    assert "testLoss" not in failures_of(p)[grid[0].run_id]
    _json.dumps(p.status, allow_nan=False)  # the status write is strict JSON
    results_store.encode(got)  # so is the ConfigMap value (allow_nan=False inside)


def test_only_the_studys_own_jobs_and_their_own_pods_count():
    """A rogue pod with a run's labels (anyone who may create pods in the namespace) and a Job
    of a deleted namesake study (another owner uid) are never harvested."""
    s = spec()
    grid = runs(s)
    j = job(grid[0], finished=None)
    rogue = pod(j.name, grid[0], message=trainer_message(result(grid[0], 0.01)),
                owner_uid="uid-someone-else")
    p = run_plan(s, jobs=[j], pods=[rogue])
    assert p.harvested == [] and p.run_phases[grid[0].run_id] in ("Queued", "Running")
    old = job(grid[1], finished="Complete", owner_uid="uid-of-a-deleted-study")
    p = run_plan(s, jobs=[old], pods=[pod(old.name, grid[1], message=trainer_message(result(grid[1])))])
    assert all(h.run_id != grid[1].run_id for h in p.harvested)
    assert p.run_phases[grid[1].run_id] != "Succeeded"


def test_a_study_whose_pods_cannot_start_says_why():
    """A Job that created no pod for a minute (a missing PriorityClass, a quota) and a pod
    stuck pulling its image set Stalled with the cause, and one Warning Event per change."""
    s = spec()
    grid = runs(s)
    no_pod = job(grid[0])
    fresh = run_plan(s, jobs=[no_pod], now=NOW - 60)  # created 40 s ago: still fine
    assert conditions_of(fresh)["Stalled"]["status"] == "False"
    p = run_plan(s, jobs=[no_pod])
    c = conditions_of(p)["Stalled"]
    assert c["status"] == "True" and c["reason"] == "PodsCannotStart"
    assert no_pod.name in c["message"] and "PriorityClass" in c["message"]
    assert any(e.reason == "PodsCannotStart" for e in p.events)
    again = run_plan(s, status=p.status, jobs=[no_pod])
    assert not any(e.reason == "PodsCannotStart" for e in again.events)  # said once
    pulling = job(grid[1])
    body_pod = pod(pulling.name, grid[1], phase="Pending")
    import dataclasses
    body_pod = dataclasses.replace(body_pod, blocked="ImagePullBackOff: Back-off pulling image")
    q = run_plan(s, jobs=[pulling], pods=[body_pod])
    assert "ImagePullBackOff" in conditions_of(q)["Stalled"]["message"]


def test_recent_failures_keep_the_newest_failed_runs_of_the_grid_and_no_more():
    """status.recentFailures: this pass's failures first, then the earlier ones, at most
    RECENT_FAILURES, only runs of the current grid that are still Failed."""
    s = spec(maxParallelRuns=20)
    grid = runs(s)

    def failing(rs):
        jobs = [job(r, finished="Failed", reason="BackoffLimitExceeded") for r in rs]
        return jobs, [pod(j.name, r, phase="Failed", exit_code=1, message=f"boom {r.run_id}")
                      for j, r in zip(jobs, rs)]

    jobs, pods = failing(grid[:4])
    p = run_plan(s, jobs=jobs, pods=pods)
    assert [e["runId"] for e in p.status["recentFailures"]] == [r.run_id for r in grid[:4]][::-1]
    # the Jobs are gone; three more fail: newest first, cut at RECENT_FAILURES
    jobs, pods = failing(grid[4:7])
    q = run_plan(s, status=p.status, jobs=jobs, pods=pods, recorded=kept(p))
    ids = [e["runId"] for e in q.status["recentFailures"]]
    assert len(ids) == RECENT_FAILURES == 5
    assert ids == [r.run_id for r in grid[4:7]][::-1] + [grid[3].run_id, grid[2].run_id]
    assert q.status["runsFailed"] == 7 and len(q.results) == 7
    # the grid shrinks to data size 100: failures of dropped runs leave the list
    smaller = spec(maxParallelRuns=20)
    smaller["dataSizes"] = [100]
    r = plan(STUDY, smaller, q.status, runs(smaller), [], [], NOW, SETTINGS,
             recorded=kept(p, q))
    kept_ids = {x.run_id for x in runs(smaller)}
    assert [e["runId"] for e in r.status["recentFailures"]] == [i for i in ids if i in kept_ids]


def test_the_fit_input_is_the_same_document_whatever_order_the_results_come_in():
    """A reader that rebuilds a lost fit input from the results ConfigMaps (read shard by
    shard, in any order) gets the operator's very document: the bootstrap resamples rows by
    position, so another order would give other intervals than status.fit's."""
    from ftscale.controller.plan import fit_input_digest, fit_input_document

    s = spec()
    grid, jobs, pods = _all_done(s)
    p = run_plan(s, jobs=jobs, pods=pods)
    shuffled = sorted(p.results, key=lambda r: r.run_id)
    assert [r.run_id for r in shuffled] != [r.run_id for r in p.results]
    digest = fit_input_digest(s, shuffled)
    assert digest == p.fit_input["inputDigest"]
    assert fit_input_document(STUDY.name, s, shuffled, digest) == p.fit_input
    assert [r["run_id"] for r in p.fit_input["results"]] == [r.run_id for r in grid]
