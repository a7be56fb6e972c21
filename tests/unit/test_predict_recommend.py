"""`ftscale predict` / `ftscale recommend`: predictions from a study's fit.json (with bootstrap
intervals), from `ftscale fit --json`, and from a cluster study's status.fit (point estimates,
read through a faked kubernetes client; the status document is the real producer's:
FitSummary.from_study_fit + fit_status)."""

import json
import math

import numpy as np
import pytest

from ftscale.api.fit_summary import FitSummary, fit_status
from ftscale.cli import main
from ftscale.law import FactorRows, LawOptions, fit_study
from ftscale.law.critical import crossings
from ftscale.law.fit import percentile_interval
from ftscale.law.predict import laws_from_fit_doc, laws_from_status, predict, recommend, select
from ftscale.law.synthetic import X_COLUMN, factor_rows


@pytest.fixture(scope="module")
def study_fit():
    """FMT and LoRA on the paper's model-size grid, LoRA also over its ranks; 30 resamples."""
    rng = np.random.default_rng(0)
    fbm = {"fmt": [FactorRows("model_size", "model_params",
                              factor_rows("fmt", "model_size", rng=rng, seeds=1))],
           "lora": [FactorRows(f, X_COLUMN[f], factor_rows("lora", f, rng=rng, seeds=1))
                    for f in ("model_size", "pet_size")]}
    return fit_study(fbm, LawOptions.from_spec({"forms": ["multiplicative"], "bootstrap": 30}))


@pytest.fixture()
def workdir(tmp_path, study_fit):
    (tmp_path / "fit.json").write_text(study_fit.to_json())
    return tmp_path


def run_json(capsys, argv):
    rc = main(argv + ["--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_predict_interval_is_the_percentile_of_replicate_predictions(workdir, study_fit,
                                                                      capsys):
    doc = run_json(capsys, ["predict", str(workdir), "--method", "lora", "--x", "7e9",
                            "--d", "50000"])
    law = study_fit.law("lora", "model_size")
    assert doc["predicted_loss"] == pytest.approx(float(law.params.predict(7e9, 5e4)), rel=1e-12)
    reps = [float(s.predict(7e9, 5e4)) for s in law.samples if s is not None]
    assert doc["replicates"] == len(reps) >= 25
    lo, hi = percentile_interval(reps, 0.95)
    assert doc["interval"] == pytest.approx([lo, hi], rel=1e-6)  # replicates kept to 9 digits
    assert lo < doc["predicted_loss"] < hi
    ex = doc["extrapolation"]
    # 7B lies within the fitted 1B–8B (16B is held out); 50K within LoRA's 8K–90K
    assert ex["x_decades"] == 0.0 and ex["x_range"] == [1e9, 8e9]
    assert ex["d_decades"] == 0.0


def test_predict_states_extrapolation_in_decades(workdir, capsys):
    doc = run_json(capsys, ["predict", str(workdir / "fit.json"), "--method", "fmt", "--x",
                            "80e9", "--d", "1e4"])
    ex = doc["extrapolation"]
    assert ex["x_decades"] == pytest.approx(math.log10(80e9 / 8e9))
    assert ex["d_decades"] == pytest.approx(-math.log10(1e5 / 1e4))  # fmt's D starts at 100K
    assert main(["predict", str(workdir), "--method", "fmt", "--x", "80e9", "--d", "1e4"]) == 0
    text = capsys.readouterr().out
    assert "1.00 decades above the largest fitted X" in text
    assert "1.00 decades below the smallest fitted D" in text


def test_predict_pet_size_law(workdir, study_fit, capsys):
    doc = run_json(capsys, ["predict", str(workdir), "--method", "lora", "--factor", "pet_size",
                            "--x", "32", "--d", "20000"])
    law = study_fit.law("lora", "pet_size")
    assert doc["predicted_loss"] == pytest.approx(float(law.params.predict(32, 2e4)), rel=1e-12)
    assert doc["interval"] is not None


def test_predict_bad_input_exits_2(workdir, tmp_path, capsys):
    assert main(["predict", str(workdir), "--method", "prompt", "--x", "7e9", "--d", "5e4"]) == 2
    assert "no multiplicative law for 'prompt'" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing"), "--method", "fmt", "--x", "1", "--d",
                 "1"]) == 2
    assert main(["predict", str(workdir), "--study", "a/b", "--method", "fmt", "--x", "1e9",
                 "--d", "1e5"]) == 2
    assert main(["predict", str(workdir), "--method", "fmt", "--x", "-1", "--d", "1e5"]) == 2


def test_recommend_ranks_methods_with_critical_size_and_certainty(workdir, study_fit, capsys):
    doc = run_json(capsys, ["recommend", str(workdir), "--x", "7e9", "--d", "50000"])
    preds = {p["method"]: p["predicted_loss"] for p in doc["ranking"]}
    assert list(preds) == sorted(preds, key=preds.get)
    assert doc["winner"] == doc["ranking"][0]["method"]
    assert 0.0 <= doc["winner_share"] <= 1.0
    first = study_fit.law(doc["ranking"][0]["method"], "model_size")
    second = study_fit.law(doc["ranking"][1]["method"], "model_size")
    roots = crossings(first.params, second.params, 7e9)
    assert [c["data_size"] for c in doc["critical"]["crossings"]] == pytest.approx(roots)
    pet = doc["pet_sizes"]
    assert [p["method"] for p in pet] == ["lora"]
    losses = [s["predicted_loss"] for s in pet[0]["sizes"]]
    assert losses == sorted(losses) and len(losses) == 7  # the 7 ranks it was run at
    assert main(["recommend", str(workdir), "--x", "7e9", "--d", "50000"]) == 0
    text = capsys.readouterr().out
    assert "best in" in text and "critical data size" in text and "PET sizes" in text


def test_winner_share_counts_replicates_where_the_winner_wins(study_fit):
    entries = laws_from_fit_doc(json.loads(study_fit.to_json()))
    doc = recommend(entries, 7e9, 5e4)
    a, b = (select(entries, p["method"]) for p in doc["ranking"])
    wins = [sa.predict(7e9, 5e4) < sb.predict(7e9, 5e4)
            for sa, sb in zip(a.samples, b.samples) if sa is not None and sb is not None]
    assert doc["winner_share"] == pytest.approx(np.mean(wins))


def test_fit_table_output_works_too(tmp_path, capsys):
    rng = np.random.default_rng(1)
    rows = factor_rows("fmt", "model_size", rng=rng, seeds=1) + \
        factor_rows("prompt", "model_size", rng=rng, seeds=1)
    import csv

    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    assert main(["fit", str(tmp_path / "t.csv"), "--group-by", "method", "--bootstrap", "10",
                 "--json"]) == 0
    (tmp_path / "fit.json").write_text(capsys.readouterr().out)
    doc = run_json(capsys, ["predict", str(tmp_path / "fit.json"), "--method", "prompt",
                            "--factor", "model_params", "--x", "4e9", "--d", "2e4"])
    assert doc["interval"] is not None
    doc = run_json(capsys, ["recommend", str(tmp_path / "fit.json"), "--factor", "model_params",
                            "--x", "4e9", "--d", "2e4"])
    assert {p["method"] for p in doc["ranking"]} == {"fmt", "prompt"}


# ---- a cluster study: status.fit through the kubeconfig ------------------------------------

@pytest.fixture()
def status_doc(study_fit):
    """status.fit exactly as the operator writes it (ftscale.controller.harvest)."""
    return json.loads(json.dumps(fit_status("demo-fit-1", "sha256:x", "Succeeded",
                                            summary=FitSummary.from_study_fit(study_fit))))


def test_status_predictions_are_point_estimates_without_interval(status_doc, study_fit):
    entries = laws_from_status(status_doc)
    pred = predict(select(entries, "lora"), 7e9, 5e4)
    law = study_fit.law("lora", "model_size")
    # parameters travel with 10 significant digits
    assert pred["predicted_loss"] == pytest.approx(float(law.params.predict(7e9, 5e4)), rel=1e-8)
    assert pred["interval"] is None and "no bootstrap replicates" in pred["note"]
    assert pred["extrapolation"]["x_decades"] is None  # status.fit keeps no points
    doc = recommend(entries, 7e9, 5e4)
    assert doc["winner_share"] is None and any("status.fit" in n for n in doc["notes"])
    assert doc["critical"]["crossings"] or doc["critical"]["no_crossing"]


class FakeCustomObjects:
    objects = {}

    def __init__(self, api_client):
        pass

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        from kubernetes.client.rest import ApiException

        assert (group, version, plural) == ("ftscale.io", "v1alpha1", "scalingstudies")
        if (namespace, name) not in self.objects:
            raise ApiException(status=404, reason="Not Found")
        return self.objects[(namespace, name)]


@pytest.fixture()
def fake_cluster(monkeypatch, status_doc):
    import kubernetes.client

    import ftscale.controller.kube as kube

    monkeypatch.setattr(kube, "load_api_client", lambda kubeconfig=None: None)
    monkeypatch.setattr(kubernetes.client, "CustomObjectsApi", FakeCustomObjects)
    FakeCustomObjects.objects = {
        ("ml", "demo"): {"status": {"phase": "Fitted", "fit": status_doc}},
        ("ml", "young"): {"status": {"phase": "Running"}},
        ("ml", "failed"): {"status": {"fit": fit_status("f", "d", "Failed", reason="BadResult",
                                                        message="no factor could be fitted")}},
    }


def test_cli_reads_a_cluster_study(fake_cluster, capsys):
    doc = run_json(capsys, ["predict", "--study", "ml/demo", "--method", "fmt", "--x", "7e9",
                            "--d", "1e6"])
    assert doc["source"] == "status.fit" and doc["interval"] is None
    assert main(["recommend", "--study", "ml/demo", "--x", "7e9", "--d", "5e4"]) == 0
    assert "no bootstrap replicates" in capsys.readouterr().out


@pytest.mark.parametrize("ref,message", [("ml/missing", "not found"),
                                         ("ml/young", "no status.fit yet"),
                                         ("ml/failed", "no factor could be fitted"),
                                         ("nonamespace", "NAMESPACE/NAME")])
def test_cli_cluster_study_errors(fake_cluster, capsys, ref, message):
    assert main(["predict", "--study", ref, "--method", "fmt", "--x", "7e9", "--d", "1e6"]) == 2
    assert message in capsys.readouterr().err


# ---- candidate models -------------------------------------------------------------------------

def test_recommend_models_cli(tmp_path, capsys):
    rows = []
    rng = np.random.default_rng(4)
    for name, (b, beta, e) in {"small": (8.0, 0.25, 1.2), "big": (30.0, 0.35, 0.8)}.items():
        for d in 200 * 2.0 ** np.arange(10):
            rows.append({"model": name, "data_size": d,
                         "test_loss": b * d ** -beta + e + rng.normal(0, 0.003)})
    path = tmp_path / "subsets.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    doc = run_json(capsys, ["recommend", "--models", str(path), "--d", "1.6e6"])
    assert doc["ranking"][0]["model"] == "big"
    assert {"by_power_law", "by_largest_subset", "winner_share"} <= set(doc)
    assert main(["recommend", "--models", str(path), "--d", "1.6e6"]) == 0
    assert "recommended: big" in capsys.readouterr().out
    assert main(["recommend", str(tmp_path), "--models", str(path), "--d", "1e6"]) == 2
