"""The study browser's pages (ftscale.browser) from the operator's cache contents, as the real
producers make them: statuses written by ftscale.controller.plan from testkit Jobs and pods
whose termination messages the trainer and the fit Job wrote (tests/producers.py), and the
ConfigMaps the reconciler writes from the same plans (the sharded results ConfigMaps, the gzip
fit input). The app is served by aiohttp's test server; the pages are parsed as HTML."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "controller"))
from controller_testkit import (NOW, SETTINGS, STUDY, FakeConfigMaps, job, pod,  # noqa: E402
                                result, runs, selector_matches, spec, trainer_message)

from ftscale import results as rc  # noqa: E402
from ftscale.api import fit_input as fit_input_codec, results_store  # noqa: E402
from ftscale.api.fit_summary import FitSummary  # noqa: E402
from ftscale.browser import views  # noqa: E402
from ftscale.browser.app import make_app  # noqa: E402
from ftscale.browser.reports import ReportCache  # noqa: E402
from ftscale.controller import names  # noqa: E402
from ftscale.controller.plan import plan  # noqa: E402
from ftscale.controller.templates import (StudyRef, fit_input_configmap,  # noqa: E402
                                          results_configmap)
from ftscale.spec import with_defaults  # noqa: E402
from producers import FIT_SPEC, fit_job_message, planted_loss  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


# ---- the cache contents, as the operator's producers make them ------------------------------
def body(spec_: dict, status: dict | None, name: str = STUDY.name, namespace: str = STUDY.namespace,
         generation: int = 1) -> dict:
    """A ScalingStudy as the watch delivers it (the API server has applied the defaults)."""
    return {"apiVersion": names.API_VERSION, "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}",
                         "generation": generation, "resourceVersion": "7"},
            "spec": with_defaults(spec_), "status": status or {}}


def cluster_configmaps(body_: dict, results, fit_input: dict | None = None,
                       max_bytes: int = results_store.SHARD_MAX_BYTES) -> dict[str, dict]:
    """The ConfigMaps the reconciler writes for the study `body_` (its UID owns them), as the
    API returns them, by name: `results` (in harvest order) merged into the results shards
    (templates.results_configmap, results_store.assign), and the gzip'd fit input."""
    meta = body_["metadata"]
    ref = StudyRef(name=meta["name"], namespace=meta["namespace"], uid=meta["uid"],
                   generation=meta["generation"])
    store = FakeConfigMaps()
    encoded = {results_store.key(r.run_id): results_store.encode(r) for r in results}
    for index, data in sorted(results_store.assign(encoded, {}, max_bytes).items()):
        store.put_configmap_data(results_configmap(ref, index), data, False)
    if fit_input is not None:
        store.put_configmap_binary(fit_input_configmap(ref),
                                   {names.FIT_INPUT_FILE: fit_input_codec.encode_b64(fit_input)})
    return {name: obj for (_, name), obj in store.configmaps.items()}


def recorded(body_: dict, configmaps: dict[str, dict]) -> dict[str, rc.RunResult]:
    meta = body_["metadata"]
    return results_store.read_results(meta["name"], meta["uid"], configmaps.values()).results


def running_world():
    """SPEC's 8 runs: two succeeded, one failed with a message holding HTML, the rest not
    started. Returns (body, the reconciler's ConfigMaps by name)."""
    s = spec()
    grid = runs(s)
    jobs, pods = [], []
    on_gpus = [r for r in grid if r.gpus]  # tiny-2's: their wall time costs GPU-hours
    for i, run in enumerate(on_gpus[:2]):
        j = job(run, finished="Complete")
        jobs.append(j)
        pods.append(pod(j.name, run, message=trainer_message(result(run, loss=2.5 - 0.1 * i))))
    bad = job(grid[0], finished="Failed", reason="PodFailurePolicy",
              message="Container trainer for pod exited with 2")
    jobs.append(bad)
    pods.append(pod(bad.name, grid[0], phase="Failed", exit_code=2,
                    message=f"config: unknown task {HOSTILE}"))
    p = plan(STUDY, with_defaults(s), None, grid, jobs, pods, NOW, SETTINGS)
    b = body(s, p.status)
    return b, cluster_configmaps(b, [h.result for h in p.harvested])


def fitted_world(spec_: dict, fail_index: int | None = None):
    """Every run of `spec_` finished with planted losses (one failed, if fail_index), then the
    fit Job ran on the fit input: its termination message is what the fit Job's entry point
    writes for those results. Returns (body, ConfigMaps by name, the fit input); the results
    are spread over several shards (small ones), as a large study's are."""
    s = with_defaults(spec_)
    grid = runs(s)
    jobs, pods, results = [], [], []
    for i, run in enumerate(grid):
        k = run.key
        params = run.x_values.get("model_params")
        if i == fail_index:
            j = job(run, finished="Failed", reason="PodFailurePolicy")
            jobs.append(j)
            pods.append(pod(j.name, run, phase="Failed", exit_code=2,
                            message=f"config: bad {HOSTILE}"))
            continue
        res = result(run, loss=planted_loss(params, k.data_size, k.method, k.seed),
                     model_params=params, device="cuda:TEST GPU x1")
        results.append(res)
        j = job(run, finished="Complete")
        jobs.append(j)
        pods.append(pod(j.name, run, message=trainer_message(res)))
    first = plan(STUDY, s, None, grid, jobs, pods, NOW, SETTINGS)
    assert first.fit_job is not None, "every run is terminal: the fit is due"
    fit_name = first.fit_job["metadata"]["name"]
    fit_done = job(None, component=names.COMPONENT_FIT, name=fit_name, finished="Complete",
                   annotations={names.ANNOTATION_FIT_DIGEST: first.fit_input["inputDigest"]})
    message = fit_job_message(STUDY.name, s, results)
    done = plan(STUDY, s, first.status, grid, [fit_done], [pod(fit_name, message=message)],
                NOW, SETTINGS, recorded=first.new_results)
    assert done.status["phase"] == "Fitted", done.status["conditions"]
    b = body(spec_, done.status)
    configmaps = cluster_configmaps(b, [h.result for h in first.harvested], first.fit_input,
                                    max_bytes=FITTED_SHARD_BYTES)
    assert len(configmaps) >= 4  # three results shards or more, and the fit input
    return b, configmaps, first.fit_input


# Small results shards for fitted_world: readers must read every shard of a study.
FITTED_SHARD_BYTES = 4000


# FIT_SPEC with a fifth data size: with one run failed, both methods keep enough points for
# every law form (the fit skips a factor with too few, and the pages would show fewer laws).
# A small bootstrap keeps the fit (run twice: by the fit Job, again for the report) short.
BROWSER_SPEC = {**FIT_SPEC, "dataSizes": [100, 200, 400, 800, 1600], "law": {"bootstrap": 8}}


@pytest.fixture(scope="module")
def fitted():
    return fitted_world(BROWSER_SPEC, fail_index=5)


class Reader:
    """A ClusterReader (ftscale.report.cluster) over ConfigMap objects by name in one
    namespace, recording its reads (the browser's only API calls): ("get", name) and
    ("list", label selector)."""

    def __init__(self, configmaps: dict[str, dict], namespace: str = STUDY.namespace):
        self.configmaps = configmaps
        self.namespace = namespace
        self.reads: list[tuple[str, str]] = []

    def get_configmap(self, namespace: str, name: str):
        self.reads.append(("get", name))
        found = self.configmaps.get(name) if namespace == self.namespace else None
        return copy.deepcopy(found)

    def list_configmaps(self, namespace: str, label_selector: str):
        self.reads.append(("list", label_selector))
        if namespace != self.namespace:
            return []
        return [copy.deepcopy(cm) for _, cm in sorted(self.configmaps.items())
                if selector_matches(label_selector, cm["metadata"].get("labels") or {})]


# ---- views ----------------------------------------------------------------------------------
def test_the_list_shows_phase_runs_gpu_hours_and_fit_of_every_study(fitted):
    running, _ = running_world()
    done, _, _ = fitted
    other = dict(done, metadata={**done["metadata"], "namespace": "a-first", "name": "zz"})
    rows = views.study_rows([running, done, other])
    assert [(r.namespace, r.name) for r in rows] == [("a-first", "zz"), ("ns", "demo"), ("ns", "demo")]
    r = views.study_row(running)
    assert (r.phase, r.succeeded, r.failed, r.total, r.progress) == ("Running", 2, 1, 8, "3/8")
    assert r.fitted is False and r.fit_phase is None and r.url == "/studies/ns/demo"
    # GPU-hours: what the plan recorded (12.5 s of wall time × 2 GPUs, twice)
    assert r.gpu_hours == running["status"]["gpuHoursSpent"] == pytest.approx(2 * 25 / 3600, rel=1e-5)
    f = views.study_row(done)
    assert (f.phase, f.fitted, f.fit_phase, f.failed) == ("Fitted", True, "Succeeded", 1)
    assert f.succeeded == f.total - 1 == len(recorded(done, fitted[1])) - 1


def test_the_study_page_lists_runs_with_reasons_and_the_fits_laws(fitted):
    running, configmaps = running_world()
    page = views.study_page(running, recorded(running, configmaps).values())
    assert len(page.runs) == 3 and page.unfinished == 5
    failed = [r for r in page.runs if r.phase == "Failed"]
    assert len(failed) == 1 and failed[0].reason == rc.INVALID_CONFIG
    assert HOSTILE in failed[0].message  # kept as text; the template escapes it
    assert page.fit is None and page.grafana_url is None
    assert {c.type for c in page.conditions} >= {"Progressing", "Fitted", "Succeeded"}

    done, configmaps, _ = fitted
    page = views.study_page(done, recorded(done, configmaps).values(),
                            grafana_base="https://grafana.example/")
    assert len(page.runs) == page.row.total and page.unfinished == 0
    summary = FitSummary.parse(done["status"]["fit"])
    assert [(law.method, law.factor, law.form) for law in page.fit.laws] == \
        [(law.method, law.factor, law.form) for law in summary.laws]
    fmt = next(law for law in page.fit.laws if law.method == "fmt" and law.form == "multiplicative")
    alpha = next(p for p in fmt.parameters if p.symbol == "α")
    assert alpha.value == pytest.approx(0.12, abs=0.03)  # the planted law (tests/producers.py)
    assert alpha.low is not None and alpha.low <= alpha.value <= alpha.high  # bootstrap interval
    assert page.grafana_url == ("https://grafana.example/d/ftscale-studies"
                                "?var-namespace=ns&var-study=demo")


def test_a_fit_summary_of_another_schema_is_shown_as_unreadable():
    running, _ = running_world()
    running["status"]["fit"] = {"phase": "Succeeded", "schema": "ftscale.io/fit-summary/v0",
                                "message": "old"}
    view = views.study_page(running).fit
    assert view.laws == () and "fit-summary/v0" in view.error


def test_the_grafana_link_names_the_dashboard_the_chart_ships():
    board = json.loads((REPO / "monitoring" / "dashboards" / "ftscale-studies.json").read_text())
    assert board["uid"] == views.GRAFANA_DASHBOARD_UID
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"namespace", "study"} <= variables
    assert views.grafana_link("", "ns", "s") is None
    assert views.grafana_link("javascript:alert(1)//", "ns", "s") is None
    assert views.grafana_link("http://g:3000/grafana", "a b", "s&t") == \
        "http://g:3000/grafana/d/ftscale-studies?var-namespace=a+b&var-study=s%26t"


# ---- the pages ------------------------------------------------------------------------------
class Tables(HTMLParser):
    """Rows of every table with an id, as cell texts; every link's href; script tags."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.links: dict[str, str] = {}
        self.scripts = 0
        self._table = None
        self._in_body = False
        self._row = None
        self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = self.tables.setdefault(attrs["id"], [])
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._table is not None and self._in_body:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "a" and attrs.get("id"):
            self.links[attrs["id"]] = attrs.get("href")
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def serve(bodies, reader, **kw):
    """Run `check(client)` against the app on aiohttp's test server."""
    from aiohttp.test_utils import TestClient, TestServer

    def run(check):
        async def main():
            app = make_app(lambda: bodies, reader, **kw)
            async with TestClient(TestServer(app)) as client:
                return await check(client)
        return asyncio.run(main())
    return run


def test_the_list_page_links_every_study_and_escapes_nothing_unsafe(fitted):
    running, _ = running_world()
    done, _, _ = fitted
    other = body(spec(), None, name="fresh", namespace="lab")

    async def check(client):
        resp = await client.get("/")
        assert resp.status == 200
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["Cache-Control"] == "no-store"
        return await resp.text()
    text = serve([running, other], Reader({}))(check)
    rows = Tables(text).tables["studies-table"]
    assert [r[:3] for r in rows] == [["lab", "fresh", "Pending"], ["ns", "demo", "Running"]]
    assert rows[1][3:8] == ["3/8", "2", "1", "8", f"{running['status']['gpuHoursSpent']:.3g}"]
    assert rows[1][8] == "not yet"
    assert 'href="/studies/ns/demo"' in text and Tables(text).scripts == 0
    empty = serve([], Reader({}))(lambda c: _text(c, "/"))
    assert "No ScalingStudy yet" in empty


async def _text(client, path, status=200):
    resp = await client.get(path)
    assert resp.status == status, await resp.text()
    return await resp.text()


def test_the_study_page_shows_runs_conditions_laws_and_links(fitted):
    done, configmaps, _ = fitted

    async def check(client):
        return await _text(client, "/studies/ns/demo")
    reader = Reader(configmaps)
    text = serve([done], reader, grafana_url="https://grafana.example")(check)
    # one list of the results ConfigMaps: every shard, no per-shard reads
    assert reader.reads == [("list", results_store.label_selector("demo"))]
    page = Tables(text)
    runs_rows = page.tables["runs-table"]
    assert len(runs_rows) == len(recorded(done, configmaps)) == done["status"]["runsTotal"]
    failed = [r for r in runs_rows if r[6] == "Failed"]
    assert len(failed) == 1 and failed[0][9] == rc.INVALID_CONFIG
    assert HOSTILE in failed[0][10]  # the parser unescaped it: it was text on the page
    assert HOSTILE not in text and "&lt;script&gt;" in text and page.scripts == 0
    assert len(page.tables["laws-table"]) == len(done["status"]["fit"]["laws"])
    assert {r[0] for r in page.tables["conditions-table"]} >= {"Progressing", "Fitted"}
    assert page.links["report-link"] == "/studies/ns/demo/report"
    assert page.links["grafana-link"].startswith("https://grafana.example/d/ftscale-studies?")
    # results that cannot be listed (RBAC): the study is still shown, without its runs
    refusing = Reader(configmaps)
    refusing.list_configmaps = lambda *a: (_ for _ in ()).throw(RuntimeError("forbidden"))
    page = Tables(serve([done], refusing)(check))
    assert page.tables.get("runs-table", []) == [] and page.tables["laws-table"]


def test_unknown_studies_are_404_and_nothing_but_get_is_allowed():
    running, _ = running_world()

    async def check(client):
        assert (await client.get("/studies/ns/nope")).status == 404
        assert (await client.get("/studies/other/demo/report")).status == 404
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            assert (await client.request(method, "/studies/ns/demo")).status == 405
            assert (await client.request(method, "/")).status == 405
        assert (await client.head("/studies/ns/demo")).status == 200
        return await _text(client, "/studies/ns/nope", 404)
    assert "no ScalingStudy ns/nope" in serve([running], Reader({}))(check)


def test_the_report_is_rendered_once_from_two_configmap_reads_and_changes_no_body(fitted):
    done, configmaps, _ = fitted
    reader = Reader(configmaps)
    cache = ReportCache(reader)
    before = json.dumps(done, sort_keys=True)

    async def check(client):
        first, second = await asyncio.gather(
            client.get("/studies/ns/demo/report"), client.get("/studies/ns/demo/report"))
        assert first.status == second.status == 200
        text = await first.text()
        assert text == await second.text()
        assert "frame-ancestors 'none'" in first.headers["Content-Security-Policy"]
        for path in ("/", "/studies/ns/demo"):
            await _text(client, path)
        return text, await _text(client, "/studies/ns/demo/report")
    text, again = serve([done], reader, cache=cache)(check)
    assert cache.renders == 1 and text == again
    # the report: one list of the results shards and one get of the fit input, for two views;
    # the study page lists the results shards once more
    listed = ("list", results_store.label_selector("demo"))
    assert sorted(reader.reads) == sorted([listed, listed,
                                           ("get", names.fit_input_configmap_name("demo"))])
    assert text.count("<svg ") >= 5 and HOSTILE not in text and "&lt;script&gt;" in text
    assert "Scaling study <code>demo</code>" in text and "not fitted" not in text
    assert json.dumps(done, sort_keys=True) == before  # the cached body is read, never changed


def test_the_report_cache_renders_again_when_the_study_changes_and_forgets_old_states():
    running, configmaps = running_world()
    rendered = []

    def render(body, read):
        rendered.append(body["status"]["runsSucceeded"] + body["status"]["runsFailed"])
        return f"page {len(rendered)}"
    cache = ReportCache(Reader({}), render=render, kept=2)

    async def views_of(*bodies):
        return [await cache.get(b) for b in bodies]
    more = json.loads(json.dumps(running))  # the state before the last harvest
    more["status"]["runsSucceeded"] -= 1
    other = body(spec(), running["status"], name="other")
    pages = asyncio.run(views_of(running, running, more, more, running, other))
    assert pages == ["page 1", "page 1", "page 2", "page 2", "page 3", "page 4"]
    assert rendered == [3, 2, 3, 3] and cache.renders == 4
    # one page per study is kept (an older state is never shown again), at most `kept` pages
    assert [k[1] for k in cache._pages] == ["demo", "other"]


def test_a_report_that_cannot_be_made_says_why_and_is_not_kept(fitted):
    done, configmaps, _ = fitted

    class Forbidden(Exception):
        status = 403

    class Refusing:
        def get_configmap(self, namespace, name):
            raise Forbidden(f"configmaps {name} is forbidden {HOSTILE}")

        def list_configmaps(self, namespace, selector):
            raise Forbidden(f"configmaps with {selector} are forbidden {HOSTILE}")
    refuse = Refusing()
    cache = ReportCache(refuse)

    async def check(client):
        return await _text(client, "/studies/ns/demo/report", 502)
    text = serve([done], refuse, cache=cache)(check)
    assert "ui.enabled=true" in text and HOSTILE not in text and "&lt;img" in text
    assert cache.renders == 0


def test_views_of_a_status_written_by_an_older_generation_say_so():
    running, _ = running_world()
    assert views.study_row(running).behind is False
    running["metadata"]["generation"] = 2
    assert views.study_row(running).behind is True


# ---- settings ---------------------------------------------------------------------------------
def test_the_browser_is_off_unless_a_port_is_set_and_takes_a_port_of_its_own(monkeypatch):
    from ftscale.cli import build_parser
    from ftscale.commands.operator import settings_from_args
    from ftscale.controller.settings import OperatorSettings, SettingsError

    default = OperatorSettings.from_env({})
    assert (default.ui_port, default.ui_bind_address, default.ui_grafana_url) == (0, "127.0.0.1", "")
    monkeypatch.setenv("FTSCALE_UI_GRAFANA_URL", "https://g.example")
    argv = ["operator", "--ui-port", "8082", "--ui-bind-address", "0.0.0.0"]
    s = settings_from_args(build_parser(argv).parse_args(argv))
    assert (s.ui_port, s.ui_bind_address, s.ui_grafana_url) == (8082, "0.0.0.0", "https://g.example")
    with pytest.raises(SettingsError, match="FTSCALE_UI_PORT.*port of its own"):
        OperatorSettings.from_env({"FTSCALE_UI_PORT": "8080"})  # the metrics port
    with pytest.raises(SettingsError, match="FTSCALE_UI_PORT"):
        OperatorSettings.from_env({"FTSCALE_UI_PORT": "70000"})
