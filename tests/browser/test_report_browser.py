"""report.html in a real browser: `ftscale run` (the stand-in trainer of tests/e2e, one run
made to fail, a study author's HTML in the spec) writes the page, and headless Chromium
(tests/browser/setup.sh) loads it from file:// — no console errors, nothing requested but the
file, every plot laid out with content, the tables' rows, sorting by a click, the author's HTML
as text and no dialog. Screenshots (screen and print layout) and a PDF are saved under
$FTSCALE_TEST_ARTIFACTS (default $FTSCALE_CACHE/artifacts)/browser/ for a person to look at.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest
import yaml

from browser_support import Chromium, chromium_binary
from ftscale import grid
from ftscale.local.study_run import run_study
from ftscale.local.workdir import Workdir
from ftscale.report import build_report_model, write_html
from ftscale.spec import load_study

pytestmark = pytest.mark.slow  # runs a study (30 stand-in runs and a fit), then a browser

REPO = Path(__file__).resolve().parents[2]
FAKE = REPO / "tests" / "e2e" / "local_fake_trainer.py"
HOSTILE = "<script>alert(1)</script>"
STUDY = {
    "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": "web"},
    "spec": {
        "task": {"name": "toy-en-de", "promptTemplate": f"Translate {HOSTILE}: {{source}}"},
        "models": [{"name": f"m{i}", "source": f"toy:m{i}"} for i in (1, 2, 3)],
        "methods": [{"name": "fmt"}, {"name": "prompt", "sizes": [8]}],
        "dataSizes": [100, 200, 400, 800, 1600],
        "law": {"bootstrap": 10},
        "execution": {"maxParallelRuns": 2, "backoffLimit": 0},
    },
}


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = chromium_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: run tests/browser/setup.sh "
                        "(apt-get install chromium)")
        pytest.skip("chromium is not installed: run tests/browser/setup.sh")
    return binary


@pytest.fixture(scope="module")
def artifacts() -> Path:
    root = os.environ.get("FTSCALE_TEST_ARTIFACTS") or Path(
        os.environ.get("FTSCALE_CACHE", Path.home() / ".cache" / "ftscale")) / "artifacts"
    out = Path(root) / "browser"
    out.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser test artifacts: {out}")
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> tuple[Path, str]:
    """A finished study's workdir with report.html, and what `ftscale run` printed."""
    tmp = tmp_path_factory.mktemp("study")
    study_file = tmp / "study.yaml"
    study_file.write_text(yaml.safe_dump(STUDY))
    runs = grid.expand(load_study(STUDY).spec)
    broken = next(r for r in runs if r.key.method == "prompt" and r.key.data_size == 100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTSCALE_TRAINER_CMD", f"{sys.executable} {FAKE}")
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        mp.setenv("FAKE_FAIL", broken.run_id)
        out = io.StringIO()
        code = run_study(str(study_file), workdir=str(tmp / "wd"), out=out, err=out)
    assert code == 1, out.getvalue()  # one run failed; the rest is reported
    return tmp / "wd", out.getvalue()


PAGE_FACTS = """(() => {
  const svgs = [...document.querySelectorAll('svg')].map(s => {
    const r = s.getBoundingClientRect(), g = s.querySelector('g');
    const b = g ? g.getBBox() : {width: 0, height: 0};
    return {w: r.width, h: r.height, content_w: b.width, content_h: b.height,
            drawn: s.querySelectorAll('path, use, line').length};
  });
  const rows = id => document.querySelectorAll('#' + id + ' tbody tr').length;
  return {svgs, scripts: document.scripts.length, title: document.title,
          h1: document.querySelector('h1').textContent,
          results: rows('results-table'), failed: rows('failed-table'), laws: rows('laws-table'),
          failed_text: (document.querySelector('#failed-table') || {}).textContent || '',
          spec: document.querySelector('pre.spec').textContent};
})()"""

# What sticks out of the printed page's width (it would be cut off on paper).
PRINT_OVERFLOW = """[...document.querySelectorAll('main *')]
  .filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
               && !e.closest('svg'))
  .map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + Math.round(e.getBoundingClientRect().right))
  .slice(0, 10)"""

SORT_BY_TEST_LOSS = """(() => {
  const th = [...document.querySelectorAll('#results-table thead th')]
    .find(t => t.textContent.trim() === 'test loss');
  const col = [...th.parentNode.children].indexOf(th);
  const column = () => [...document.querySelectorAll('#results-table tbody tr')]
    .map(r => r.cells[col].getAttribute('data-sort'));
  th.click(); const up = column(), upAria = th.getAttribute('aria-sort');
  th.click(); const down = column(), downAria = th.getAttribute('aria-sort');
  return {up, upAria, down, downAria};
})()"""


def load(binary: str, page: Path, tmp: Path, shots: Path | None = None) -> tuple[dict, object]:
    """Open the page; its facts and the tab's events (screenshots and a PDF into `shots`)."""
    with Chromium(binary, tmp) as tab:
        tab.open(page.resolve().as_uri())
        facts = tab.evaluate(PAGE_FACTS)
        if shots is not None:
            tab.screenshot(shots / "report.png")
            tab.print_media(True)
            tab.screenshot(shots / "report-print.png")
            facts["print_overflow"] = tab.evaluate(PRINT_OVERFLOW)
            tab.print_media(False)
            tab.pdf(shots / "report.pdf")
        facts["sorted"] = tab.evaluate(SORT_BY_TEST_LOSS)
        return facts, tab.events


def assert_healthy(facts: dict, events, page: Path) -> None:
    assert events.errors() == []
    assert facts.get("print_overflow", []) == []
    assert set(events.requests) == {page.resolve().as_uri()}, "the page loaded something else"
    assert facts["scripts"] == 1
    n_svg = page.read_text().count("<svg ")
    assert len(facts["svgs"]) == n_svg > 0
    for svg in facts["svgs"]:
        assert svg["w"] > 100 and svg["h"] > 100, svg
        assert svg["content_w"] > 100 and svg["content_h"] > 100 and svg["drawn"] > 20, svg


def test_the_report_of_a_study_in_chromium(workdir, chromium, artifacts, tmp_path):
    wd, printed = workdir
    page = wd / "report.html"
    assert f"report: {page.resolve()}" in printed
    assert f"report: {(wd / 'report.md').resolve()}" in printed
    shots = artifacts / "study"
    shots.mkdir(exist_ok=True)
    facts, events = load(chromium, page, tmp_path, shots)
    print(f"screenshots: {shots}")
    assert_healthy(facts, events, page)

    study = load_study(STUDY)
    runs = grid.expand(study.spec)
    assert facts["results"] == len({(r.key.model, r.key.method, r.key.pet_size,
                                     r.key.data_size) for r in runs}) == 3 * 2 * 5
    assert facts["failed"] == 1 and "RuntimeError" in facts["failed_text"]
    assert facts["laws"] == 4  # fmt and prompt × multiplicative and additive
    # the overview, four laws, their single-variable fits; each one an SVG
    assert len(facts["svgs"]) >= 5
    # the author's HTML in the spec is text, and ran nothing
    assert f"promptTemplate: 'Translate {HOSTILE}: {{source}}'" in facts["spec"]
    assert events.dialogs == []

    # a click sorts by the column (empty cells last), a second click the other way
    s = facts["sorted"]
    values = [float(v) for v in s["up"] if v]
    assert s["upAria"] == "ascending" and values == sorted(values) and len(values) >= 20
    assert s["downAria"] == "descending"
    assert [float(v) for v in s["down"] if v] == sorted(values, reverse=True)
    for order in (s["up"], s["down"]):
        assert order[len(values):] == [""] * (len(order) - len(values))

    assert (shots / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (shots / "report-print.png").stat().st_size > 10_000
    assert (shots / "report.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_study_name_with_html_is_shown_as_text(workdir, chromium, artifacts, tmp_path):
    """Names reach the page from anywhere (a cluster study's, a results file's): the page
    shows them as typed."""
    wd, _ = workdir
    study = load_study(STUDY)
    runs = grid.expand(study.spec)
    results = Workdir(wd).all_results()
    page = write_html(tmp_path / "hostile.html", build_report_model(
        HOSTILE, study.spec, runs, results, None, [f"note {HOSTILE}"]))
    shots = artifacts / "hostile"
    shots.mkdir(exist_ok=True)
    facts, events = load(chromium, page, tmp_path, shots)
    assert_healthy(facts, events, page)
    assert facts["h1"] == f"Scaling study {HOSTILE}"
    assert facts["title"].startswith(f"Scaling study {HOSTILE}")
    assert events.dialogs == []


def test_the_demo_report_in_chromium(chromium, artifacts, tmp_path):
    """`make demo`'s report.html, when this machine has run the demo."""
    demo = Path(os.environ.get("FTSCALE_DEMO_DIR") or Path(
        os.environ.get("FTSCALE_CACHE", Path.home() / ".cache" / "ftscale")) / "demo")
    page = demo / "report.html"
    if not page.is_file():
        pytest.skip(f"no {page}: run `make demo` first")
    shots = artifacts / "demo"
    shots.mkdir(exist_ok=True)
    facts, events = load(chromium, page, tmp_path, shots)
    assert_healthy(facts, events, page)
    runs = grid.expand(load_study(yaml.safe_load((demo / "study.yaml").read_text())).spec)
    assert facts["results"] == len({(r.key.model, r.key.method, r.key.pet_size,
                                     r.key.data_size) for r in runs})
