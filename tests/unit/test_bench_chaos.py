"""The pure parts of benchmarks/bench_chaos.py (`make bench-chaos`) and its --help; the
benchmark itself needs the Go-built control plane and is run by hand (docs/operator.md)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_chaos as bc  # noqa: E402
from ftscale.controller.desired import desired_runs  # noqa: E402


def test_grid_keys_are_the_operators_grid():
    keys = bc.grid_keys(50)
    manifest = bc.study_manifest(models=2, max_parallel=50, backoff_limit=1)
    assert [r.key for r in desired_runs(bc.STUDY, manifest["spec"])] == keys
    assert len({k.run_id for k in keys}) == 50
    with pytest.raises(ValueError):
        bc.grid_keys(30)


def test_pod_fails_is_a_pure_function_near_the_fraction():
    ids = [k.run_id for k in bc.grid_keys(1600)]
    first = [bc.pod_fails(3, r, 0, 0.05) for r in ids]
    assert first == [bc.pod_fails(3, r, 0, 0.05) for r in ids]  # same verdict each time
    assert 0.03 < sum(first) / len(ids) < 0.07
    # attempts and seeds are drawn apart, and the extremes hold
    assert first != [bc.pod_fails(3, r, 1, 0.05) for r in ids]
    assert first != [bc.pod_fails(4, r, 0, 0.05) for r in ids]
    assert not any(bc.pod_fails(3, r, 0, 0.0) for r in ids)
    assert bc.pod_fails(3, ids[0], 0, 0.0, first_fails={ids[0]})
    assert not bc.pod_fails(3, ids[0], 1, 0.0, first_fails={ids[0]})


def test_expectation_counts_attempts_until_the_first_success():
    key = bc.grid_keys(25)[0]
    assert bc.expectation(key, 0, 0.0, 1) == bc.Expectation(bc.expected_loss(key), True, 1)
    assert bc.expectation(key, 0, 0.0, 1, first_fails={key.run_id}).max_pods == 2
    never = bc.expectation(key, 0, 0.999999, 2)
    assert (never.succeeds, never.max_pods) == (False, 3)


def test_honest_losses_never_look_forged():
    for key in bc.grid_keys(64 * 25):
        assert bc.expected_loss(key) >= 1.5
    assert max(bc.FORGED_LOSS.values()) < 1.0


def test_kills_start_in_the_first_wave_then_wait_for_results():
    allowed = bc.kill_allowed
    # first kill: once part of the first wave of Jobs exists, before any result
    assert not allowed(0, 20, jobs_created=9, results=0, runs=200, max_parallel=50)
    assert allowed(0, 20, jobs_created=10, results=0, runs=200, max_parallel=50)
    assert allowed(0, 3, jobs_created=2, results=0, runs=25, max_parallel=5)
    # later kills: only once results flow, never after the last result, never beyond --kills
    assert not allowed(1, 20, jobs_created=50, results=0, runs=200, max_parallel=50)
    assert allowed(1, 20, jobs_created=50, results=1, runs=200, max_parallel=50)
    assert not allowed(5, 20, jobs_created=200, results=200, runs=200, max_parallel=50)
    assert not allowed(20, 20, jobs_created=100, results=50, runs=200, max_parallel=50)


def test_p95_nearest_rank():
    assert bc.p95([1.0] * 19 + [9.0]) == 1.0
    assert bc.p95([float(i) for i in range(1, 101)]) == 95.0
    assert bc.p95([]) != bc.p95([])  # NaN


def _world(n=4):
    keys = bc.grid_keys(25)[:n]
    expected = {k.run_id: bc.Expectation(bc.expected_loss(k), True, 1) for k in keys}
    results = {k.run_id: bc.honest_result(k) for k in keys}
    jobs = {k.run_id: {f"uid-{k.run_id}"} for k in keys}
    pods = {k.run_id: 1 for k in keys}
    return keys, expected, results, jobs, pods


def test_audit_of_a_clean_final_state_is_all_zeros():
    _, expected, results, jobs, pods = _world()
    out = bc.audit(expected, results, jobs, pods)
    assert (out.duplicate_jobs, out.lost, out.wrong, out.forged) == (0, [], [], [])


def test_audit_counts_duplicates_losses_and_forgeries():
    keys, expected, results, jobs, pods = _world()
    a, b, c, d = (k.run_id for k in keys)
    jobs[a] = {"uid-1", "uid-2"}  # a Job deleted and re-created
    pods[b] = 2  # a second pod where the kubelet failed none
    del results[c]  # nothing recorded
    results[d] = bc.forged_result(keys[3], "unowned")
    outside = bc.forged_result(bc.OUTSIDE_GRID_KEY, "outside-grid")
    results[outside.run_id] = outside
    out = bc.audit(expected, results, jobs, pods)
    assert out.duplicate_job_runs == [a] and out.extra_pod_runs == [b] and out.duplicate_jobs == 2
    assert out.lost == [c]
    assert sorted(out.forged) == sorted([f"{d}: unowned", f"{outside.run_id}: outside-grid"])
    assert out.wrong == []


def test_audit_a_lost_success_a_wrong_loss_and_an_attacked_run():
    keys, expected, results, jobs, pods = _world()
    a, b, c, _ = (k.run_id for k in keys)
    results[a] = dataclasses.replace(results[a], outcome="Failed", reason="BadResult", test_loss=None)
    results[b] = dataclasses.replace(results[b], test_loss=results[b].test_loss + 0.25)
    results[c] = dataclasses.replace(results[c], outcome="Failed", reason="BadResult", test_loss=None)
    out = bc.audit(expected, results, jobs, pods, attacked={c})
    assert out.lost == [a]  # c's real pod may have been replaced by the adopted forgery
    assert out.wrong == [b]
    # a run every attempt of which failed must not show up as a success
    expected[a] = dataclasses.replace(expected[a], succeeds=False, max_pods=2)
    results[a] = bc.honest_result(keys[0])
    assert bc.audit(expected, results, jobs, pods).wrong == [a, b]


def test_forged_messages_are_the_trainers_own_documents():
    from ftscale import results as rc

    key = bc.grid_keys(25)[3]
    parsed = rc.parse_result(bc.termination_message(bc.forged_result(key, "adopted-retry")))
    assert parsed.run_id == key.run_id and parsed.test_loss == bc.FORGED_LOSS["adopted-retry"]
    assert bc.forgery_of(parsed, {key.run_id: None}) == "adopted-retry"
    assert bc.forgery_of(bc.honest_result(key), {key.run_id: None}) is None


def test_help_and_argument_checks():
    run = [sys.executable, str(REPO / "benchmarks" / "bench_chaos.py")]
    out = subprocess.run(run + ["--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    for flag in ("--runs", "--kills", "--seed", "--fail-fraction", "--smoke", "--forgeries"):
        assert flag in out.stdout
    bad = subprocess.run(run + ["--runs", "30"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "multiple of 25" in bad.stderr
    smoke = bc.parse_args(["--smoke"])
    assert (smoke.runs, smoke.kills, smoke.no_restarts) == (25, 3, True)


def test_recovery_counts_from_the_first_work_after_a_restart():
    # work was waiting at the start: from the start
    assert bc.work_since(100.0, True, [90.0, 105.0]) == 100.0
    # nothing waiting: from the first pod finished after the start (not one before it)
    assert bc.work_since(100.0, False, [90.0, 107.0, 103.0]) == 103.0
    assert bc.work_since(100.0, False, [90.0]) is None
