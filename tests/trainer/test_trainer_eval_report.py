"""The report's generation tables (ftscale.local.report): a BLEU/ROUGE table appears only with
its sample size and intervals, and only when it can tell conditions apart; otherwise the report
says why it left the table out."""

from ftscale import grid
from ftscale.local import report
from ftscale.results import RunResult
from ftscale.spec import load_study

STUDY = {"apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "g"},
         "spec": {"task": {"name": "toy-sum"}, "models": [{"name": "a", "source": "toy:a"}],
                  "methods": [{"name": "fmt"}], "dataSizes": [100, 200, 400], "seeds": [0],
                  "evaluation": {"generation": {"metrics": ["rougeL"]}}}}


def _results(scores):
    """One succeeded run per data size with generation {"rougeL": ...} from `scores`."""
    spec = load_study(STUDY).spec
    runs = grid.expand(spec)
    out = {}
    for run, generation in zip(runs, scores):
        k = run.key
        out[run.run_id] = RunResult(study="g", run_id=run.run_id, model=k.model, method=k.method,
                                    pet_size=k.pet_size, data_size=k.data_size, seed=k.seed,
                                    model_params=1000, test_loss=3.0, generation=generation)
    return runs, out


def _score(value, n, half):
    return {"rougeL": value, "rougeL_n": n, "rougeL_ci_low": value - half,
            "rougeL_ci_high": value + half}


def test_a_table_that_separates_conditions_shows_counts_and_intervals():
    runs, results = _results([_score(0.20, 400, 0.02), _score(0.25, 400, 0.02),
                              _score(0.31, 400, 0.02)])
    lines = report.generation_section(runs, results, "rougeL")
    text = "\n".join(lines)
    assert lines[0].startswith("### rougeL")
    assert "n = 400 test examples per run" in text and "95% bootstrap interval" in text
    assert "| a | 1e+03 | fmt | 0.2 [0.18, 0.22] | 0.25 [0.23, 0.27] | 0.31 [0.29, 0.33] |" in text


def test_too_few_examples_leave_the_table_out_with_the_numbers():
    runs, results = _results([_score(0.20, 32, 0.1), _score(0.25, 32, 0.1), _score(0.40, 32, 0.1)])
    text = "\n".join(report.generation_section(runs, results, "rougeL"))
    assert "Table left out" in text and "only 32 greedy outputs per run" in text
    assert "0.2 wide" in text and "| a |" not in text


def test_intervals_wider_than_the_spread_are_noise():
    runs, results = _results([_score(0.20, 500, 0.05), _score(0.23, 500, 0.05),
                              _score(0.21, 500, 0.05)])
    text = "\n".join(report.generation_section(runs, results, "rougeL"))
    assert "Table left out" in text and "within the sampling noise" in text
    assert "0.2 to 0.23" in text


def test_scores_without_a_sample_size_are_not_shown():
    runs, results = _results([{"rougeL": 0.2}, {"rougeL": 0.3}, {"rougeL": 0.4}])
    text = "\n".join(report.generation_section(runs, results, "rougeL"))
    assert "Table left out" in text and "older trainer" in text
    runs, results = _results([{}, {}, {}])
    assert "No succeeded run reported it." in report.generation_section(runs, results, "rougeL")
