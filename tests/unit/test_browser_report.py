"""A cluster study's report (ftscale.report.cluster) and `ftscale report --study`, from what
the operator really stores: statuses and ConfigMaps made by ftscale.controller.plan from the
trainer's and the fit Job's own termination messages (test_browser.py builds them)."""

from __future__ import annotations

import copy
import io
import json

import pytest

from test_browser import (BROWSER_SPEC, HOSTILE, Reader, body, cluster_configmaps, fitted_world,
                          recorded, running_world)

from ftscale.api import fit_input as fit_input_codec, results_store
from ftscale.api.fit_summary import FitSummary
from ftscale.commands import report as report_command
from ftscale.controller import names
from ftscale.controller.kube import Kube
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


def test_results_come_from_every_results_shard_of_the_study_and_only_its_own(fitted):
    done, configmaps, _ = fitted
    shards = sorted(n for n in configmaps if results_store.shard_index("demo", n) is not None)
    assert len(shards) >= 3
    inputs = cluster.load_inputs(done, Reader(configmaps))
    total = done["status"]["runsTotal"]
    assert len(inputs.results) == total == done["status"]["runsSucceeded"] + 1
    # the ConfigMaps' compact results carry what a status entry never did
    assert {r.device for r in inputs.results.values() if r.ok} == {"cuda:TEST GPU x1"}
    failed = [r for r in inputs.results.values() if not r.ok]
    assert len(failed) == 1 and HOSTILE in failed[0].message

    # a lost entry is missing (not invented); a broken one is said and skipped
    partial = copy.deepcopy(configmaps[shards[1]])
    gone = sorted(partial["data"])[0]
    del partial["data"][gone]
    partial["data"]["broken.json"] = "{not json"
    inputs = cluster.load_inputs(done, Reader({**configmaps, shards[1]: partial}))
    assert len(inputs.results) == total - 1 and gone.removesuffix(".json") not in inputs.results
    assert any("broken.json" in n and "not a run result" in n for n in inputs.notes)

    # shards of a deleted namesake (another UID) and other ConfigMaps of the study are not read
    namesake = body(BROWSER_SPEC, {}, generation=1)
    namesake["metadata"]["uid"] = "uid-of-a-deleted-demo"
    old = cluster_configmaps(namesake, [copy.deepcopy(failed[0])])
    old = {n.replace("-results-0", f"-results-{len(shards)}"): cm for n, cm in old.items()}
    for n, cm in old.items():
        cm["metadata"]["name"] = n
    inputs = cluster.load_inputs(done, Reader({**configmaps, **old}))
    assert len(inputs.results) == total and not inputs.notes


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
    cm = copy.deepcopy(configmaps[names.fit_input_configmap_name("demo")])
    cm["binaryData"][names.FIT_INPUT_FILE] = fit_input_codec.encode_b64(newer)
    inputs = cluster.load_inputs(done, Reader({**configmaps, cm["metadata"]["name"]: cm}))
    assert inputs.fit_input == newer
    assert any("newer fit" in n and "f" * 16 in n for n in inputs.notes)


def test_the_fit_input_is_read_gzipped_or_plain_and_a_corrupt_one_is_an_error(fitted):
    import base64

    done, configmaps, fit_input = fitted
    name = names.fit_input_configmap_name("demo")
    stored = base64.b64decode(configmaps[name]["binaryData"][names.FIT_INPUT_FILE])
    assert stored[:2] == fit_input_codec.GZIP_MAGIC  # what the reconciler writes: gzip
    plain = copy.deepcopy(configmaps[name])  # a hand-made input may be plain JSON
    plain["binaryData"][names.FIT_INPUT_FILE] = base64.b64encode(
        json.dumps(fit_input).encode()).decode()
    assert cluster.load_inputs(done, Reader({**configmaps, name: plain})).fit_input == fit_input
    corrupt = copy.deepcopy(configmaps[name])
    corrupt["binaryData"][names.FIT_INPUT_FILE] = base64.b64encode(stored[:20]).decode()
    with pytest.raises(ValueError, match="is not a fit input"):
        cluster.load_inputs(done, Reader({**configmaps, name: corrupt}))


def test_a_study_still_running_gets_its_results_and_no_fit():
    running, configmaps = running_world()
    reader = Reader(configmaps)
    inputs = cluster.load_inputs(running, reader)
    # one list of the results shards; no fit input to read
    assert inputs.fit_input is None
    assert reader.reads == [("list", results_store.label_selector("demo"))]
    assert inputs.results == recorded(running, configmaps) and len(inputs.results) == 3
    assert inputs.notes[0].startswith("not fitted yet: 3/8 runs terminal")
    model, study_fit, runs, notes = cluster.build_model(inputs)
    assert study_fit is None and model.fit is None and len(runs) == 8
    assert len(model.failed) == 1 and HOSTILE in model.failed[0].message
    assert dict(model.summary)["runs"] == "8 in the grid, 2 succeeded, 1 failed, 5 not finished"


def test_a_failed_fit_is_reported_with_its_reason():
    running, _ = running_world()
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
    for count in ("runsSucceeded", "runsFailed"):  # one result more or fewer
        fewer = json.loads(json.dumps(running))
        fewer["status"][count] -= 1
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


class FakeKube(Kube):
    """ftscale.controller.kube.Kube with `request` over stored objects (the API's raw JSON) by
    path: a GET of a collection with a labelSelector is a list, served in pages of `limit`
    with a continue token, so Kube.list_configmaps pages as it does against a cluster."""

    objects: dict[str, dict] = {}
    requests: list[tuple[str, tuple]] = []

    def __init__(self, api=None, **_):
        super().__init__(api)

    def request(self, method, path, body=None, content_type="application/json", query=None,
                timeout=60.0):
        from ftscale.controller.kube import NotFound
        from controller_testkit import selector_matches

        assert method == "GET", "the report only reads"
        query = dict(query or ())
        self.requests.append((path, tuple(sorted(query.items()))))
        if "labelSelector" in query:
            prefix = path.rstrip("/") + "/"
            items = [copy.deepcopy(obj) for p, obj in sorted(self.objects.items())
                     if p.startswith(prefix) and "/" not in p[len(prefix):]
                     and selector_matches(query["labelSelector"],
                                          (obj.get("metadata") or {}).get("labels") or {})]
            start = int(query.get("continue") or 0)
            limit = int(query.get("limit") or len(items) or 1)
            more = start + limit < len(items)
            return {"items": items[start:start + limit],
                    "metadata": {"continue": str(start + limit) if more else ""}}
        if path not in self.objects:
            raise NotFound(path)
        return copy.deepcopy(self.objects[path])


def _cli(monkeypatch, objects, *argv):
    import ftscale.controller.kube as kube

    FakeKube.objects = objects
    FakeKube.requests = []
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
    objects |= {cluster.configmap_path("ns", n): cm for n, cm in configmaps.items()}
    # ConfigMaps of other studies are in the namespace too: the list selects this study's
    for i in range(3):
        other = copy.deepcopy(next(iter(configmaps.values())))
        other["metadata"]["labels"][names.LABEL_STUDY] = f"other-{i}"
        other["metadata"]["name"] = f"other-{i}-results-0"
        objects[cluster.configmap_path("ns", f"other-{i}-results-0")] = other
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(monkeypatch, objects, "--study", "demo")
    assert code == 0, err
    lists = [q for p, q in FakeKube.requests if dict(q).get("labelSelector")]
    assert lists and all(dict(q)["labelSelector"] == results_store.label_selector("demo")
                         for q in lists)
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


def test_the_results_list_pages_through_every_configmap_of_the_study():
    """Kube.list_configmaps (what the operator and `ftscale report --study` list the shards
    with) follows the continue token: 250 shards come back in three pages of 100."""
    objects = {}
    for i in range(250):
        name = results_store.shard_name("big", i)
        objects[cluster.configmap_path("ns", name)] = {
            "metadata": {"name": name, "labels": {names.LABEL_STUDY: "big",
                                                  names.LABEL_COMPONENT: "results"}}}
    objects[cluster.configmap_path("ns", "unrelated")] = {"metadata": {"name": "unrelated"}}
    FakeKube.objects, FakeKube.requests = objects, []
    got = FakeKube().list_configmaps("ns", results_store.label_selector("big"))
    assert sorted(cm["metadata"]["name"] for cm in got) == sorted(
        results_store.shard_name("big", i) for i in range(250))
    assert len(FakeKube.requests) == 3
