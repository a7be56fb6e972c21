"""The budget rule (ftscale.budget.decide), on hand-computed numbers."""

from ftscale.budget import decide, gpu_seconds


def test_runs_start_in_grid_order_until_the_next_would_exceed_the_budget():
    estimates = {"a": 1.0, "b": 2.0, "c": 0.5, "d": 0.1}
    d = decide(3.2, ["a", "b", "c", "d"], estimates, finished={}, running=[])
    # a (1.0) + b (2.0) = 3.0 ≤ 3.2; c would make 3.5: c and everything after it wait
    assert d.admitted == ("a", "b") and d.blocked == ("c", "d") and d.exhausted
    assert "2 run(s) not started" in d.message()


def test_measured_costs_correct_the_estimates_and_count_as_spent():
    estimates = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    # a finished and really cost 2.0 GPU-hours (twice its estimate): the others now cost 2.0
    d = decide(5.0, ["c", "d"], estimates, finished={"a": 2.0}, running=["b"])
    assert d.correction == 2.0 and d.spent_hours == 2.0 and d.committed_hours == 2.0
    assert d.admitted == () and d.blocked == ("c", "d")
    d = decide(6.0, ["c", "d"], estimates, finished={"a": 2.0}, running=["b"])
    assert d.admitted == ("c",) and d.blocked == ("d",)


def test_unpriced_runs_cost_nothing_and_no_budget_admits_all():
    d = decide(1.0, ["cpu1", "cpu2"], {"cpu1": None, "cpu2": None}, {}, [])
    assert d.admitted == ("cpu1", "cpu2") and not d.exhausted
    d = decide(None, ["a"], {"a": 1e9}, {}, [])
    assert d.admitted == ("a",) and not d.exhausted


def test_the_correction_is_bounded_and_gpu_seconds_is_wall_times_gpus():
    d = decide(100.0, [], {"a": 1.0}, finished={"a": 1000.0}, running=[])
    assert d.correction == 10.0
    assert gpu_seconds(12.5, 4) == 50.0 and gpu_seconds(12.5, 0) == 0.0
    assert gpu_seconds(None, 2) is None
