"""report.html (ftscale.report): built from a real fit of a synthetic study — the paper's
Table 4 laws (ftscale.law.synthetic) on a small grid of LoRA and prompt tuning, fitted by the
fit Job's own function — and parsed back: every plot an inline, non-empty SVG, one table row
per grid condition, nothing loaded from outside the file, and a study author's HTML shown as
text only."""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from ftscale import grid
from ftscale.law import synthetic
from ftscale.law.job import fit_document
from ftscale.report import build_report_model, figures, render_html
from ftscale.report.build import flags_of
from ftscale.report.html import SCRIPT, _environment, script_hash
from ftscale.report.model import Flag
from ftscale.results import RunResult
from ftscale.spec import load_study

HOSTILE = "<script>alert(1)</script>"
MODELS = {"m1": 1e9, "m2": 2e9, "m3": 4e9}
# prompt tuning beats LoRA below ~1e3 examples and loses above (Table 4's En-De laws), so the
# critical-size table and chart have a crossing to show
DATA_SIZES = [100, 300, 1000, 3000, 10000]


def study_doc(name: str = "syn") -> dict:
    return {
        "apiVersion": "ftscale.io/v1alpha1", "kind": "ScalingStudy", "metadata": {"name": name},
        "spec": {
            "task": {"name": "toy-en-de", "promptTemplate": f"Translate {HOSTILE}: {{source}}"},
            "models": [{"name": n, "source": f"/models/{n}", "parameters": int(x)}
                       for n, x in MODELS.items()],
            "methods": [{"name": "lora", "sizes": [4]}, {"name": "prompt", "sizes": [100]}],
            "dataSizes": DATA_SIZES, "seeds": [0, 1],
            "evaluation": {"generation": {"metrics": ["bleu"]}},
            "law": {"bootstrap": 8},
        },
    }


def synthetic_results(study, runs, failing: set[str]) -> dict[str, RunResult]:
    rng = np.random.default_rng(0)
    out = {}
    for run in runs:
        k = run.key
        if run.run_id in failing:
            out[run.run_id] = RunResult(
                study=study.name, run_id=run.run_id, model=k.model, method=k.method,
                pet_size=k.pet_size, data_size=k.data_size, seed=k.seed, outcome="Failed",
                reason="OOMKilled", message=f"killed while logging {HOSTILE} & more")
            continue
        x = MODELS[k.model]
        loss = float(synthetic.planted(k.method, "model_size").predict(x, k.data_size))
        loss += float(rng.normal(0.0, 0.003))
        out[run.run_id] = RunResult(
            study=study.name, run_id=run.run_id, model=k.model, method=k.method,
            pet_size=k.pet_size, data_size=k.data_size, seed=k.seed, model_params=int(x),
            test_loss=loss, generation={"bleu": 30.0 - 10 * loss}, wall_seconds=2.0,
            device="cpu")
    return out


@pytest.fixture(scope="module")
def finished():
    study = load_study(study_doc())
    runs = grid.expand(study.spec)
    # one failed seed: its condition keeps the other seed, the failure is listed
    failing = {next(r.run_id for r in runs if r.key.method == "lora" and r.key.seed == 1)}
    return study, runs, synthetic_results(study, runs, failing)


@pytest.fixture(scope="module")
def fitted(finished):
    """The page of the finished study with its fit (a real fit and its plots: seconds)."""
    study, runs, results = finished
    study_fit, _ = fit_document(grid.fit_job_input(study.name, study.spec,
                                                   list(results.values())))
    model = build_report_model(HOSTILE, study.spec, runs, results, study_fit,
                               [f"executor note {HOSTILE}"], source="/tmp/wd/study.yaml",
                               generated="2026-01-01 00:00:00 UTC", fit_seconds=1.0)
    return study, runs, results, study_fit, model


@pytest.fixture(scope="module")
def unfitted(finished):
    """The same study's page before a fit (one plot: the quick tier's check of the page)."""
    study, runs, results = finished
    model = build_report_model(HOSTILE, study.spec, runs, results, None,
                               [f"executor note {HOSTILE}"], source="/tmp/wd/study.yaml")
    return study, runs, results, None, model


BOTH = ["unfitted", pytest.param("fitted", marks=pytest.mark.slow)]


# ---- a parsed page ------------------------------------------------------------------------------
@dataclasses.dataclass
class Element:
    tag: str
    attrs: dict
    children: list = dataclasses.field(default_factory=list)
    text: str = ""  # all text inside, as textContent


class Page(HTMLParser):
    """The page as a tree of Elements (void elements closed at once), its text and scripts."""

    VOID = {"meta", "br", "link", "img", "input", "hr", "col", "source", "wbr"}

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]
        self.all: list[Element] = []
        self.text_parts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        el = Element(tag, dict(attrs))
        self.stack[-1].children.append(el)
        self.all.append(el)
        if tag not in self.VOID and not tag.endswith("/"):
            self.stack.append(el)

    def handle_startendtag(self, tag, attrs):
        el = Element(tag, dict(attrs))
        self.stack[-1].children.append(el)
        self.all.append(el)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data):
        for el in self.stack[1:]:  # an element's text is all the text inside it, in order
            el.text += data
        self.text_parts.append(data)

    def find(self, tag: str, **attrs) -> list[Element]:
        return [e for e in self.all if e.tag == tag
                and all(e.attrs.get(k) == v for k, v in attrs.items())]

    @property
    def text(self) -> str:
        return "".join(self.text_parts)


def descendants(el: Element):
    for child in el.children:
        yield child
        yield from descendants(child)


def rows_of(table: Element) -> list[Element]:
    body = next(c for c in table.children if c.tag == "tbody")
    return [r for r in body.children if r.tag == "tr"]


# ---- tests --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_every_plot_is_a_non_empty_inline_svg(fitted):
    *_, study_fit, model = fitted
    page = Page(render_html(model))
    svgs = page.find("svg")
    # the overview, one per law, one critical-size chart (prompt and LoRA cross)
    assert len(model.fit.critical_figures) == 1
    assert len(svgs) == 1 + len(study_fit.laws) + len(study_fit.single_laws) + 1
    for svg in svgs:
        drawn = [e for e in descendants(svg) if e.tag in ("path", "use", "line", "polyline")]
        assert len(drawn) > 20, "an empty plot"
        assert svg.attrs.get("viewbox") and svg.attrs.get("width")
        assert svg.attrs.get("role") == "img" and svg.children[0].tag == "title"
        assert svg.children[0].text.strip(), "a plot without an accessible name"
        # the figures' text is real text, e.g. the axis labels
        assert "finetuning" in svg.text or \
            "critical" in svg.text
    ids = [e.attrs["id"] for e in page.all if "id" in e.attrs]
    assert len(ids) == len(set(ids)), "ids repeat across the inline SVGs"


@pytest.mark.parametrize("page_of", BOTH)
def test_the_results_table_has_one_row_per_condition(page_of, request):
    study, runs, results, _, model = request.getfixturevalue(page_of)
    page = Page(render_html(model))
    table = page.find("table", id="results-table")[0]
    assert "sortable" in table.attrs["class"]
    rows = rows_of(table)
    conditions = {(r.key.model, r.key.method, r.key.pet_size, r.key.data_size) for r in runs}
    assert len(rows) == len(conditions) == 3 * 2 * len(DATA_SIZES)
    heads = [th.text for th in descendants(table) if th.tag == "th"]
    assert heads[:8] == ["model", "X_m", "method", "PET size", "D_f", "runs ok / planned",
                         "test loss", "sd"] and heads[8] == "bleu"
    # a cell shows the seed mean and sorts by the unrounded value
    first = runs[0]
    mean = np.mean([results[r.run_id].test_loss for r in runs if results[r.run_id].ok
                    and (r.key.model, r.key.method, r.key.data_size) ==
                    (first.key.model, first.key.method, first.key.data_size)])
    cells = [c for c in rows[0].children if c.tag == "td"]
    assert [c.text for c in cells[:5]] == [first.key.model, "1e+09", first.key.method,
                                           str(first.key.pet_size), str(first.key.data_size)]
    assert float(cells[6].attrs["data-sort"]) == pytest.approx(mean, rel=1e-12)
    # the condition with the failed seed is marked, and the failure is listed with its reason
    failed_rows = [r for r in rows if r.attrs.get("class") == "failed"]
    assert len(failed_rows) == 1 and "1 / 2 (1 failed)" in failed_rows[0].text
    failed = rows_of(page.find("table", id="failed-table")[0])
    assert len(failed) == 1
    assert [c.text for c in failed[0].children][6:] == ["OOMKilled",
                                                         f"killed while logging {HOSTILE} & more"]


@pytest.mark.parametrize("page_of", BOTH)
def test_nothing_is_loaded_from_outside_the_file(page_of, request):
    *_, model = request.getfixturevalue(page_of)
    text = render_html(model)
    page = Page(text)
    for el in page.all:
        for attr in ("src", "href", "xlink:href", "action", "data"):
            value = el.attrs.get(attr)
            assert value is None or value.startswith("#"), (el.tag, attr, value)
    assert not page.find("link") and not page.find("img") and not page.find("iframe")
    assert not re.search(r"url\((?!#)|@import|https?://(?!www\.w3\.org/)", text)
    csp = page.find("meta", **{"http-equiv": "Content-Security-Policy"})[0].attrs["content"]
    assert "default-src 'none'" in csp
    scripts = page.find("script")
    assert len(scripts) == 1 and not scripts[0].attrs.get("src")
    # the one script runs because the policy names its hash
    assert script_hash(scripts[0].text) in csp
    assert scripts[0].text == _environment().loader.get_source(_environment(), SCRIPT)[0].strip()


@pytest.mark.parametrize("page_of", BOTH)
def test_a_study_authors_html_is_text_only(page_of, request):
    *_, model = request.getfixturevalue(page_of)
    text = render_html(model)
    page = Page(text)
    assert HOSTILE not in text  # only escaped
    assert len(page.find("script")) == 1
    assert page.find("title")[0].text.startswith(f"Scaling study {HOSTILE}")
    assert page.find("h1")[0].children[0].text == HOSTILE
    shown = page.text
    assert f"executor note {HOSTILE}" in shown
    assert f"promptTemplate: 'Translate {HOSTILE}: {{source}}'" in shown  # the spec's YAML


@pytest.mark.slow
def test_laws_intervals_critical_sizes_and_findings_are_shown(fitted):
    *_, study_fit, model = fitted
    page = Page(render_html(model))
    laws = rows_of(page.find("table", id="laws-table")[0])
    assert len(laws) == len(study_fit.laws) == 4  # lora, prompt × multiplicative, additive
    for law in study_fit.laws:
        section = page.find("section", id=next(
            v.anchor for v in model.fit.laws if v.method == dict(law.group)["method"]
            and v.form == law.form))[0]
        shown = section.text
        lo, hi = law.intervals["beta"]
        assert f"[{lo:.3g}, {hi:.3g}]" in shown
        assert f"{law.params.beta:.5g}" in shown
    crossings = rows_of(page.find("table", id="critical-table")[0])
    crossing = next(c for c in study_fit.critical
                    if c["form"] == "multiplicative" and c["crossings"])
    assert len(crossings) >= len(MODELS)
    assert any(f"{crossing['crossings'][0]['data_size']:.4g}" in
               r.text for r in crossings)
    findings = page.find("section", id="findings")[0]
    assert "finetuning data helps most for" in findings.text


@pytest.mark.slow
def test_degenerate_fit_flags_are_shown_with_their_law(fitted):
    *_, study_fit, model = fitted
    page = Page(render_html(model))
    all_laws = list(study_fit.laws) + list(study_fit.single_laws)
    for law, view in zip(all_laws, model.fit.laws + model.fit.single_laws):
        section = page.find("section", id=view.anchor)[0]
        boxes = [e for e in descendants(section) if e.attrs.get("class") == "flags"]
        flags = law.to_dict(with_points=False).get("flags", [])
        assert len(boxes) == (1 if flags else 0), view.anchor
        if flags:
            items = [e for e in descendants(boxes[0]) if e.tag == "li"]
            assert [li.text for li in items] == [
                f"{f['code']}" + (f" ({f['parameter']})" if f["parameter"] else "")
                + f": {f['message']}" for f in flags]
    n_flags = sum(len(l.to_dict(with_points=False).get("flags", [])) for l in all_laws)
    assert model.fit.n_flags == n_flags
    if n_flags:
        assert f"{n_flags} degenerate-fit flag" in page.text


@pytest.mark.slow
def test_flags_are_read_from_the_law_document_and_escaped(fitted):
    *_, study_fit, model = fitted
    doc = study_fit.laws[0].to_dict(with_points=False)
    assert flags_of({**doc, "flags": [{"code": "AtBound", "parameter": "E",
                                       "message": "E sits at its lower bound"}]}) == (
        Flag("AtBound", "E", "E sits at its lower bound"),)
    # a fit document from before the engine reported flags has none
    assert flags_of({k: v for k, v in doc.items() if k != "flags"}) == ()
    flagged = dataclasses.replace(model.fit.laws[0], flags=(
        Flag("NotIdentifiable", "alpha", f"α is not determined {HOSTILE}"),))
    fit = dataclasses.replace(model.fit, laws=(flagged,) + model.fit.laws[1:])
    text = render_html(dataclasses.replace(model, fit=fit))
    section = Page(text).find("section", id=flagged.anchor)[0]
    shown = section.text
    assert f"NotIdentifiable (alpha): α is not determined {HOSTILE}" in shown
    assert HOSTILE not in text


def test_a_study_still_running_has_its_table_and_no_fit(finished):
    study, runs, results = finished
    some = dict(list(results.items())[:5])
    model = build_report_model(study.name, study.spec, runs, some, None,
                               ["no factor has runs at two or more X values yet"])
    page = Page(render_html(model))
    assert len(rows_of(page.find("table", id="results-table")[0])) == 3 * 2 * len(DATA_SIZES)
    assert "No law was fitted." in page.text
    assert not page.find("section", id="critical")
    assert "no factor has runs at two or more X values yet" in page.text
    assert f"{len(runs)} in the grid, " in page.text
    assert len(page.find("svg")) == 1  # the overview of the runs that finished


def test_a_dollar_in_a_label_is_text_not_mathtext():
    # matplotlib starts mathtext at '$'; a lone one would fail the figure
    assert figures.plain("cost $5 per run") == r"cost \$5 per run"
