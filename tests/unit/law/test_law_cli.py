"""`ftscale fit` end to end through the CLI registry, including every bad-input case."""

import csv
import json

import numpy as np
import pytest

from ftscale.cli import main
from ftscale.law.synthetic import factor_rows


def write_csv(path, rows, fields=None):
    fields = fields or list(rows[0])
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return str(path)


@pytest.fixture
def good_rows():
    rng = np.random.default_rng(0)
    return factor_rows("fmt", "model_size", rng=rng, seeds=1) + \
        factor_rows("prompt", "model_size", rng=rng, seeds=1)


@pytest.mark.slow
def test_json_output_and_plots(tmp_path, good_rows, capsys):
    table = write_csv(tmp_path / "t.csv", good_rows)
    rc = main(["fit", table, "--group-by", "method", "--bootstrap", "8", "--json",
               "--form", "all", "--plot", str(tmp_path / "plots")])
    out = capsys.readouterr().out
    assert rc == 0
    doc = json.loads(out)
    mult = [f for f in doc["fits"] if f["form"] == "multiplicative"]
    add = [f for f in doc["fits"] if f["form"] == "additive"]
    assert {f["group"]["method"] for f in mult} == {"fmt", "prompt"}
    for f in mult:
        assert {"A", "E", "alpha", "beta", "intervals", "delta_fit", "delta_heldout",
                "convergence"} <= set(f)
        assert "B" not in f and set(f["intervals"]) >= {"A", "alpha", "beta", "E"}
    assert all("B" in f for f in add)
    assert any(f["form"] == "single" and f["x_value"] == 1e9 for f in doc["fits"])
    assert doc["critical_data_sizes"] and doc["eq3"]
    assert doc["form_comparison"]["better_form"] in ("multiplicative", "additive")
    pngs = list((tmp_path / "plots").glob("*.png"))
    assert any(p.name.startswith("critical") for p in pngs) and len(pngs) >= 7


def test_readable_table(tmp_path, good_rows, capsys):
    table = write_csv(tmp_path / "t.csv", good_rows)
    assert main(["fit", table, "--group-by", "method", "--bootstrap", "0"]) == 0
    out = capsys.readouterr().out
    assert "multiplicative" in out and "critical data size" in out and "fmt vs prompt" in out


def _bad(tmp_path, rows=None, text=None, extra=()):
    path = tmp_path / "bad.csv"
    if text is not None:
        path.write_text(text)
    else:
        write_csv(path, rows)
    return ["fit", str(path), "--bootstrap", "0", *extra]


@pytest.mark.parametrize("case, needle", [
    ("missing_column", "no column 'test_loss'"),
    ("zero_size", "must be > 0"),
    ("negative_loss", "must be > 0"),
    ("nan", "not finite"),
    ("too_few", "fitting point"),
    ("single_x", "2 distinct X"),
    ("unparsable", "not a JSON object"),
    ("empty", "empty"),
    ("missing_file", "no such file"),
    ("text_cell", "not a number"),
    ("bad_group", "--group-by"),
    ("bad_holdout", "held-out"),
])
def test_bad_input_one_line_exit_2(tmp_path, good_rows, capsys, case, needle):
    rows = [dict(r) for r in good_rows if r["method"] == "fmt"]
    extra = ()
    text = None
    if case == "missing_column":
        rows = [{k: v for k, v in r.items() if k != "test_loss"} for r in rows]
    elif case == "zero_size":
        rows[3]["data_size"] = 0
    elif case == "negative_loss":
        rows[5]["test_loss"] = -1.0
    elif case == "nan":
        rows[2]["test_loss"] = float("nan")
    elif case == "too_few":
        rows = [r for r in rows if r["model_params"] in (1e9, 2e9)
                and r["data_size"] in (1e5, 5e5)]  # 4 points for 4 parameters
        extra = ("--holdout", "none")
    elif case == "single_x":
        rows = [r for r in rows if r["model_params"] == 1e9]
    elif case == "unparsable":
        text = '{"method": "fmt", "data_size": 5\n'
    elif case == "empty":
        text = ""
    elif case == "text_cell":
        rows[1]["model_params"] = "big"
    elif case == "bad_group":
        extra = ("--group-by", "optimizer")
    elif case == "bad_holdout":
        extra = ("--holdout", "x=biggest")
    argv = _bad(tmp_path, rows, text, extra)
    if case == "missing_file":
        argv[1] = str(tmp_path / "nope.csv")
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err


def test_run_result_jsonl_skips_failed(tmp_path, capsys):
    from ftscale.results import RunResult

    rng = np.random.default_rng(2)
    lines = []
    for r in factor_rows("lora", "model_size", rng=rng, seeds=1):
        lines.append(RunResult(study="s", run_id=f"r{len(lines)}", model=r["model"],
                               method="lora", pet_size=4, data_size=r["data_size"], seed=0,
                               model_params=r["model_params"], test_loss=r["test_loss"])
                     .to_compact_json())
    lines.append(RunResult(study="s", run_id="dead", model="1B", method="lora", pet_size=4,
                           data_size=10, seed=0, outcome="Failed", reason="OOMKilled")
                 .to_compact_json())
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(lines) + "\n")
    assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["skipped_failed_runs"] == 1
    assert doc["fits"][0]["n_runs"] == len(lines) - 1


def test_csv_with_a_byte_order_mark_reads(tmp_path, good_rows, capsys):
    path = tmp_path / "bom.csv"
    write_csv(path, [r for r in good_rows if r["method"] == "fmt"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # Excel's "CSV UTF-8"
    assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["fits"][0]["n_fit_points"] > 0


def test_single_form_says_which_x_values_it_dropped(tmp_path, good_rows, capsys):
    rows = [r for r in good_rows if r["method"] == "fmt"]
    rows = [r for r in rows if r["model_params"] != 2e9 or r["data_size"] in (1e5, 5e5, 1e6)]
    table = write_csv(tmp_path / "t.csv", rows)
    assert main(["fit", table, "--form", "single", "--bootstrap", "0", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert 2e9 not in {f["x_value"] for f in doc["fits"]}
    assert "not fitted at X = 2e+09 (2 data sizes)" in captured.err  # 1e6 held out
    assert any("X = 2e+09" in n for n in doc["notes"])


def test_a_fit_that_did_not_converge_exits_1_and_still_prints(tmp_path, capsys):
    from ftscale.law.synthetic import PlantedLaw

    # α = 8 lies beyond the exponent bound: the fit stops on it (not converged)
    law = PlantedLaw(1e72 * 1e6 ** 0.15, 8.0, 0.15, 0.75)
    rows = factor_rows("fmt", "model_size", rng=np.random.default_rng(2), law=law)
    table = write_csv(tmp_path / "t.csv", rows)
    assert main(["fit", table, "--bootstrap", "0"]) == 1
    captured = capsys.readouterr()
    assert "NO (" in captured.out and "AtBound(alpha)" in captured.out
    assert "did not converge" in captured.err
