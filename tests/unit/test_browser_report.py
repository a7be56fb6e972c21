"""A cluster study's report (ftscale.report.cluster) and `ftscale report --study`, from what
the operator really stores: statuses and ConfigMaps made by ftscale.controller.plan from the
trainer's and the fit Job's own termination messages (test_browser.py builds them)."""

from __future__ import annotations

import io
import json

import pytest

from test_browser import BROWSER_SPEC, HOSTILE, Reader, fitted_world, running_world

from ftscale.api.fit_summary import FitSummary
from ftscale.commands import report as report_command
from ftscale.controller import names
from ftscale.report import cluster


@pytest.fixture(scope="module")
def fitted():
    return fitted_world(BROWSER_SPEC, fail_index=5)


def test_the_refit_of_the_fit_jobs_input_gives_the_numbers_of_status_fit(fitted):
    done, configmaps, fit_input = fitted
    inputs = cluster.load_inputs(done, Reader(configmaps))
    assert inputs.fit_input == fit_input and inputs.notes == ()
    study_fit, notes, seconds = cluster.refit(inputs)
    assert notes == [] and seconds > 0
    # the same numbers, to the summary's rounding: the fit is deterministic (seeded)
    assert FitSummary.from_study_fit(study_fit).to_dict()["laws"] == done["status"]["fit"]["laws"]


def test_results_come_from_the_configmap_and_from_status_where_it_has_none(fitted):
    done, configmaps, _ = fitted
    results_cm = names.results_configmap_name("demo")
    inputs = cluster.load_inputs(done, Reader(configmaps))
    entries = done["status"]["results"]
    assert set(inputs.results) == {e["runId"] for e in entries}
    # the ConfigMap's compact results carry what status entries leave out
    assert {r.device for r in inputs.results.values() if r.ok} == {"cuda:TEST GPU x1"}
    failed = [r for r in inputs.results.values() if not r.ok]
    assert len(failed) == 1 and HOSTILE in failed[0].message

    partial = dict(configmaps[results_cm])
    gone = sorted(partial)[0]
    del partial[gone]
    partial["broken.json"] = "{not json"
    inputs = cluster.load_inputs(done, Reader({**configmaps, results_cm: partial}))
    assert set(inputs.results) == {e["runId"] for e in entries}  # the status entry fills in
    assert inputs.results[gone.removesuffix(".json")].device is None
    assert any("broken.json" in n and "not a run result" in n for n in inputs.notes)

    without = {k: v for k, v in configmaps.items() if k != results_cm}
    inputs = cluster.load_inputs(done, Reader(without))
    assert set(inputs.results) == {e["runId"] for e in entries}
    assert any(f"{results_cm} was not found" in n for n in inputs.notes)


def test_a_lost_fit_input_is_rebuilt_from_status_as_the_operator_built_it(fitted):
    done, configmaps, fit_input = fitted
    without = {k: v for k, v in configmaps.items()
               if k != names.fit_input_configmap_name("demo")}
    inputs = cluster.load_inputs(done, Reader(without))
    assert inputs.fit_input == fit_input
    assert any("was not found" in n and "rebuilt" in n for n in inputs.notes)


def test_a_newer_fit_input_than_status_fit_is_said(fitted):
    done, configmaps, fit_input = fitted
    newer = dict(fit_input, inputDigest="f" * 16)
    cms = {**configmaps, names.fit_input_configmap_name("demo"): {
        names.FIT_INPUT_FILE: json.dumps(newer)}}
    inputs = cluster.load_inputs(done, Reader(cms))
    assert any("newer fit" in n and "f" * 16 in n for n in inputs.notes)


def test_a_study_still_running_gets_its_results_and_no_fit():
    running, results_data = running_world()
    reader = Reader({names.results_configmap_name("demo"): results_data})
    inputs = cluster.load_inputs(running, reader)
    assert inputs.fit_input is None and reader.reads == [names.results_configmap_name("demo")]
    assert inputs.notes[0].startswith("not fitted yet: 3/8 runs terminal")
    model, study_fit, runs, notes = cluster.build_model(inputs)
    assert study_fit is None and model.fit is None and len(runs) == 8
    assert len(model.failed) == 1 and HOSTILE in model.failed[0].message
    assert dict(model.summary)["runs"] == "8 in the grid, 2 succeeded, 1 failed, 5 not finished"


def test_a_failed_fit_is_reported_with_its_reason():
    running, results_data = running_world()
    running["status"]["fit"] = {"phase": "Failed", "reason": "NothingToFit",
                                "message": "no factor has runs at two X values"}
    inputs = cluster.load_inputs(running, Reader({}))
    assert inputs.fit_input is None
    assert inputs.notes[0] == "the fit failed (NothingToFit): no factor has runs at two X values"


def test_report_key_changes_with_every_result_and_fit_and_only_then():
    running, _ = running_world()
    key = cluster.report_key(running)
    assert key[:3] == ("ns", "demo", "uid-demo") and cluster.report_key(running) == key
    touched = json.loads(json.dumps(running))
    touched["status"]["conditions"][0]["lastTransitionTime"] = "2030-01-01T00:00:00Z"
    assert cluster.report_key(touched) == key  # not something the report shows
    fewer = json.loads(json.dumps(running))
    fewer["status"]["results"].pop()
    assert cluster.report_key(fewer) != key
    fit = json.loads(json.dumps(running))
    fit["status"]["fit"] = {"phase": "Succeeded", "inputDigest": "abc"}
    assert cluster.report_key(fit) != key


def test_write_report_writes_html_and_markdown(fitted, tmp_path):
    done, configmaps, _ = fitted
    html, md = cluster.write_report(tmp_path / "out", cluster.load_inputs(done, Reader(configmaps)))
    page = html.read_text()
    assert page.count("<svg ") >= 5 and HOSTILE not in page
    text = md.read_text()
    assert text.startswith("# Scaling study `demo`") and "ScalingStudy ns/demo" in text
    assert "## Results: test loss (nats/token)" in text and "### Failed runs" in text
    assert "multiplicative" in text and "report.html" in text


class FakeKube:
    """Kube.request over stored objects (the API's raw JSON), as ftscale.controller.kube's."""

    objects: dict[str, dict] = {}

    def __init__(self, api=None, **_):
        pass

    def request(self, method, path, *a, **kw):
        from ftscale.controller.kube import NotFound

        assert method == "GET", "the report only reads"
        if path not in self.objects:
            raise NotFound(path)
        return self.objects[path]


def _cli(monkeypatch, objects, *argv):
    import ftscale.controller.kube as kube

    FakeKube.objects = objects
    monkeypatch.setattr(kube, "Kube", FakeKube)
    monkeypatch.setattr(kube, "load_api_client", lambda *a, **kw: None)
    monkeypatch.setattr(kube, "own_namespace", lambda *a, **kw: "ns")
    args = _parse(*argv)
    out, err = io.StringIO(), io.StringIO()
    code = report_command.cluster_report(args.study, args.kubeconfig, args.output, out, err)
    return code, out.getvalue(), err.getvalue()


def _parse(*argv):
    import argparse

    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_ftscale_report_study_writes_both_files_and_prints_their_paths(fitted, tmp_path,
                                                                       monkeypatch):
    done, configmaps, _ = fitted
    objects = {cluster.study_path("ns", "demo"): done}
    objects |= {cluster.configmap_path("ns", n): {"data": d} for n, d in configmaps.items()}
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(monkeypatch, objects, "--study", "demo")
    assert code == 0, err
    folder = (tmp_path / "demo-report").resolve()
    assert out.splitlines() == [f"report: {folder / 'report.html'}",
                                f"report: {folder / 'report.md'}"]
    assert (folder / "report.html").read_text().count("<svg ") >= 5

    code, out, err = _cli(monkeypatch, objects, "--study", "ns/missing")
    assert code == 2 and "no ScalingStudy ns/missing" in err
    code, _, err = _cli(monkeypatch, objects, "--study", "a/b/c")
    assert code == 2 and "NAMESPACE/NAME" in err


def test_ftscale_report_takes_a_workdir_or_a_study_not_both(capsys):
    for argv in (("some/dir", "--study", "ns/s"), (), ("some/dir", "--output", "x")):
        assert report_command.main(_parse(*argv)) == 2
        assert "error:" in capsys.readouterr().err
    assert report_command.parse_study_ref("lab/s", "ns") == ("lab", "s")
    assert report_command.parse_study_ref("s", "ns") == ("ns", "s")
    for bad in ("", "/s", "lab/", "a/b/c"):
        with pytest.raises(ValueError):
            report_command.parse_study_ref(bad, "ns")
