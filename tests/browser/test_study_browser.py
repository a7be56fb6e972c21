"""The study browser and `ftscale report --study` in a real browser, against the real control
plane (tests/cluster).

The chart is installed with ui.enabled=true and the operator runs as a local process with the
chart's environment and its ServiceAccount's credentials (as tests/helm/test_helm_install.py
does), so the browser's ConfigMap reads go through the chart's RBAC. A 12-run study is taken
to Fitted: the test plays the kubelet — run pods finish with the trainer's result JSON (losses
from a planted law), one run fails with HTML in its message, and the fit pod's termination
message is what the fit Job's own entry point (`python -m ftscale.law.job`) writes for the fit
input the operator put in `<study>-fit-input`. Then headless Chromium opens the list, the
study page and its report: no console errors, the tables' rows, the run's HTML shown as text,
every plot an SVG with content; and `ftscale report --study` writes a report.html that loads
the same way. Screenshots go to $FTSCALE_TEST_ARTIFACTS (default $FTSCALE_CACHE/artifacts)
/browser/study-browser/ for a person to look at.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "helm"))
sys.path.insert(0, str(REPO / "tests" / "integration"))

from browser_support import Chromium  # noqa: E402
from helm_support import CHART, Helm  # noqa: E402
from operator_testkit import (create_study, finish, free_port, get_study,  # noqa: E402
                              result_message, running_pods, study_manifest, wait_until)
from test_helm_install import (RELEASE, RESTRICTED, Release, _adopt_existing_crd,  # noqa: E402
                               _chart_env, _token_kubeconfig)
from test_report_browser import artifacts, chromium  # noqa: E402,F401 - fixtures

from ftscale.api.outcomes import TERMINATION_MESSAGE_ENV  # noqa: E402
from ftscale.controller import names  # noqa: E402
from producers import planted_loss  # noqa: E402

pytestmark = pytest.mark.slow  # a control plane, a chart, a study with its fit, a browser

HOSTILE = '<script>alert("run")</script><img src=x onerror=alert(2)>'
STUDY = "browsed"
MODELS = ("tiny-1", "tiny-2", "tiny-3")  # parameters 1000·4^i (operator_testkit.study_manifest)
DATA_SIZES = (100, 200, 400, 800)
GRAFANA = "http://grafana.test:3000"


def _params(model: str) -> int:
    return 1000 * 4 ** MODELS.index(model)


def _fit_message(fit_input: bytes, tmp: Path) -> str:
    """Act as the fit pod's kubelet: run the fit Job's entry point on the fit input (the
    ConfigMap's gzip bytes, as the pod's volume holds them) and return what it wrote to its
    termination-message file."""
    (tmp / "fit-input.json").write_bytes(fit_input)
    term = tmp / "termination-log"
    env = {**os.environ, TERMINATION_MESSAGE_ENV: str(term),
           "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}"}
    proc = subprocess.run([sys.executable, "-m", "ftscale.law.job", "--input",
                           str(tmp / "fit-input.json"), "--output", str(tmp / "fit")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return term.read_text()


class World:
    def __init__(self, ns: str, ui: str, kubeconfig: str, log: Path):
        self.ns, self.ui, self.kubeconfig, self.log = ns, ui, kubeconfig, log


@pytest.fixture(scope="module")
def world(cluster, cluster_binaries, kubeconfig_path, core_api, apps_api_, custom_objects_api,
          apiextensions_api, tmp_path_factory):
    """The chart (ui on), its operator as a process with the browser on a free port, and the
    study taken to Fitted."""
    tmp = tmp_path_factory.mktemp("study-browser")
    suffix = uuid.uuid4().hex[:6]
    ns, study_ns, other_ns = f"ftscale-{suffix}", f"research-{suffix}", f"elsewhere-{suffix}"
    for name in (ns, study_ns, other_ns):
        core_api.create_namespace({"metadata": {"name": name, "labels": {
            **RESTRICTED, "ftscale.test/namespace": "true"}}})
    _adopt_existing_crd(apiextensions_api, ns)
    release = Release(Helm(cluster_binaries.helm), cluster, kubeconfig_path, ns, study_ns, other_ns)
    release.run("install", RELEASE, str(CHART), "--wait", "--timeout", "180s",
                "--set", f"operator.watchNamespaces={{{study_ns}}}", "--set", "trainer.image.tag=test",
                "--set", "ui.enabled=true", "--set", f"ui.grafanaUrl={GRAFANA}", timeout=240)
    ui_port, metrics_port, health_port = free_port(), free_port(), free_port()
    env = {**os.environ, **_chart_env(release, apps_api_, "ftscale-operator-test-0"),
           "FTSCALE_UI_PORT": str(ui_port), "FTSCALE_METRICS_PORT": str(metrics_port),
           "FTSCALE_HEALTH_PORT": str(health_port),
           "FTSCALE_BATCH_SECONDS": "0.1", "FTSCALE_RESYNC_SECONDS": "5",
           "FTSCALE_RESULT_GRACE_SECONDS": "3", "FTSCALE_LOG_FORMAT": "plain",
           "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}"}
    assert env["FTSCALE_UI_GRAFANA_URL"] == GRAFANA  # from the chart's Deployment
    log = tmp / "operator.log"
    operator_kubeconfig = _token_kubeconfig(release, tmp / "operator.kubeconfig")
    with open(log, "wb") as out:
        operator = subprocess.Popen([sys.executable, "-m", "ftscale", "operator", "--kubeconfig",
                                     str(operator_kubeconfig)], stdout=out,
                                    stderr=subprocess.STDOUT, env=env, cwd=REPO)
    ui = f"http://127.0.0.1:{ui_port}"
    try:
        def up():
            assert operator.poll() is None, log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(ui + "/", timeout=5):
                    return True
            except OSError:
                return False
        wait_until(up, 90, "the study browser")
        manifest = study_manifest(STUDY, models=MODELS, data_sizes=DATA_SIZES,
                                  maxParallelRuns=12, backoffLimit=0)
        manifest["spec"]["law"] = {"bootstrap": 8}
        manifest["spec"]["task"]["promptTemplate"] = f"Translate {HOSTILE}: {{source}}"
        create_study(custom_objects_api, study_ns, manifest)
        wait_until(lambda: len(running_pods(core_api, study_ns, STUDY)) == 12, 120,
                   "12 running run pods")
        pods = sorted(running_pods(core_api, study_ns, STUDY), key=lambda p: p.metadata.name)
        for i, pod in enumerate(pods):
            labels = pod.metadata.labels
            if i == 0:
                finish(core_api, pod, STUDY, exit_code=2, message=f"invalid config: {HOSTILE}")
                continue
            model, data_size = labels[names.LABEL_MODEL], int(labels[names.LABEL_DATA_SIZE])
            loss = planted_loss(_params(model), data_size, "fmt", 0)
            finish(core_api, pod, STUDY, message=result_message(
                pod, STUDY, loss=loss, model_params=_params(model), device="cuda:KWOK x1"))
        fit_pod = wait_until(lambda: running_pods(core_api, study_ns, STUDY, "fit"), 120,
                             "the fit pod")[0]
        fit_input = base64.b64decode(core_api.read_namespaced_config_map(
            names.fit_input_configmap_name(STUDY), study_ns).binary_data[names.FIT_INPUT_FILE])
        finish(core_api, fit_pod, STUDY, message=_fit_message(fit_input, tmp))
        wait_until(lambda: (get_study(custom_objects_api, study_ns, STUDY).get("status") or {})
                   .get("phase") == "Fitted", 120, "phase Fitted")
        # the browser's cache has seen the fitted status once the page says so
        wait_until(lambda: "Fitted" in urllib.request.urlopen(
            f"{ui}/studies/{study_ns}/{STUDY}", timeout=10).read().decode(), 30, "page Fitted")
        yield World(study_ns, ui, kubeconfig_path, log)
    finally:
        operator.send_signal(signal.SIGTERM)
        try:
            operator.wait(30)
        except subprocess.TimeoutExpired:
            operator.kill()
        print(f"---- operator log (tail) ----\n{log.read_text(errors='replace')[-4000:]}")
        release.run("uninstall", RELEASE, "--wait", "--timeout", "120s", check=False, timeout=180)
        for name in (ns, study_ns, other_ns):
            try:
                core_api.delete_namespace(name)
            except Exception:  # noqa: BLE001 - best effort; the control plane goes away anyway
                pass


@pytest.fixture(scope="module")
def apps_api_(k8s_api_client):
    from kubernetes import client

    return client.AppsV1Api(k8s_api_client)


@pytest.fixture(scope="module")
def shots(artifacts) -> Path:  # noqa: F811
    out = artifacts / "study-browser"
    out.mkdir(exist_ok=True)
    print(f"study browser screenshots: {out}")
    return out


TABLES = """(() => {
  const rows = id => [...document.querySelectorAll('#' + id + ' tbody tr')]
    .map(r => [...r.cells].map(c => c.textContent.trim()));
  const links = Object.fromEntries([...document.querySelectorAll('a[id]')]
    .map(a => [a.id, a.getAttribute('href')]));
  return {studies: rows('studies-table'), runs: rows('runs-table'), laws: rows('laws-table'),
          conditions: rows('conditions-table'), links, scripts: document.scripts.length,
          h1: (document.querySelector('h1') || {}).textContent || '',
          images: document.images.length};
})()"""

SVGS = """[...document.querySelectorAll('svg')].map(s => {
  const r = s.getBoundingClientRect(), g = s.querySelector('g');
  const b = g ? g.getBBox() : {width: 0, height: 0};
  return {w: r.width, h: r.height, content_w: b.width, content_h: b.height,
          drawn: s.querySelectorAll('path, use, line').length};
})"""


def _open(tab, url: str, shot: Path) -> dict:
    tab.open(url)
    facts = tab.evaluate(TABLES)
    facts["svgs"] = tab.evaluate(SVGS)
    tab.screenshot(shot)
    return facts


def _assert_plots(svgs: list[dict]) -> None:
    assert len(svgs) >= 3, "the overview, the laws, the critical sizes"
    for svg in svgs:
        assert svg["w"] > 100 and svg["h"] > 100, svg
        assert svg["content_w"] > 100 and svg["content_h"] > 100 and svg["drawn"] > 20, svg


def test_the_browser_shows_the_study_its_runs_its_fit_and_its_report(world, chromium, shots,
                                                                    tmp_path,
                                                                    custom_objects_api):
    status = get_study(custom_objects_api, world.ns, STUDY)["status"]
    # the first report view renders (the fit again and the plots): do it before the browser
    # waits for a page load, with a patient client
    urllib.request.urlopen(f"{world.ui}/studies/{world.ns}/{STUDY}/report", timeout=600).read()
    with Chromium(chromium, tmp_path) as tab:
        listing = _open(tab, world.ui + "/", shots / "list.png")
        assert [r[:3] for r in listing["studies"]] == [[world.ns, STUDY, "Fitted"]]
        assert listing["studies"][0][3:8] == ["12/12", "11", "1", "12",
                                              f"{status['gpuHoursSpent']:.3g}"]
        assert listing["studies"][0][8] == "yes" and listing["scripts"] == 0

        page = _open(tab, f"{world.ui}/studies/{world.ns}/{STUDY}", shots / "study.png")
        assert page["h1"] == f"Scaling study {STUDY}"
        assert len(page["runs"]) == 12
        failed = [r for r in page["runs"] if r[6] == "Failed"]
        assert len(failed) == 1 and failed[0][9] == "InvalidConfig"
        assert HOSTILE in failed[0][10], "the run's HTML is shown as text"
        assert page["images"] == 0 and page["scripts"] == 0, "and none of it became markup"
        assert len(page["laws"]) == len(status["fit"]["laws"]) >= 2
        assert {c[0] for c in page["conditions"]} >= {"Progressing", "Fitted", "Succeeded"}
        assert page["links"]["grafana-link"] == (f"{GRAFANA}/d/ftscale-studies?var-namespace="
                                                 f"{world.ns}&var-study={STUDY}")

        report = _open(tab, world.ui + page["links"]["report-link"], shots / "report.png")
        assert report["h1"] == f"Scaling study {STUDY}"
        _assert_plots(report["svgs"])
        spec = tab.evaluate("document.querySelector('pre.spec').textContent")
        assert HOSTILE in spec
        assert report["images"] == 0
        assert tab.events.errors() == [], "console errors"
        assert tab.events.dialogs == []
        assert {u.split("/")[2] for u in tab.events.requests} == {world.ui.split("/")[2]}, \
            "the pages loaded nothing from elsewhere"
    log = world.log.read_text(errors="replace")
    assert "Forbidden" not in log and "status=403" not in log, log[-3000:]


def test_ftscale_report_study_writes_a_report_that_loads_in_chromium(world, chromium, shots,
                                                                    tmp_path,
                                                                    custom_objects_api):
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'operator'}{os.pathsep}{REPO / 'trainer_image'}"}
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "ftscale", "report", "--study",
                           f"{world.ns}/{STUDY}", "--kubeconfig", world.kubeconfig,
                           "--output", str(out)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html, md = out / "report.html", out / "report.md"
    assert f"report: {html.resolve()}" in proc.stdout and f"report: {md.resolve()}" in proc.stdout
    status = get_study(custom_objects_api, world.ns, STUDY)["status"]
    text = md.read_text()
    assert f"ScalingStudy {world.ns}/{STUDY}" in text and "### Failed runs" in text
    # the fitted α of status.fit, to the 4 digits the Markdown prints
    fmt = next(law for law in status["fit"]["laws"]
               if law["method"] == "fmt" and law["form"] == "multiplicative")
    assert f"{fmt['params']['alpha']:.4g}" in text
    with Chromium(chromium, tmp_path) as tab:
        facts = _open(tab, html.resolve().as_uri(), shots / "cli-report.png")
        _assert_plots(facts["svgs"])
        assert tab.events.errors() == [] and tab.events.dialogs == []
        assert set(tab.events.requests) == {html.resolve().as_uri()}
    (shots / "cli-report.md").write_text(text)
