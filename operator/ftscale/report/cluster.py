"""The report of a study on a cluster: load its inputs through the API, re-fit, render.

No pod can ship the report (run and fit pods have no API access, and a termination message
holds 4 KB), so whoever renders it — `ftscale report --study NS/NAME` from a kubeconfig, or the
operator's study browser (ftscale.browser) — builds it from what the cluster keeps:

- the ScalingStudy: its spec (with the API server's defaults) and status (status.results, the
  durable record of every terminal run; status.fit, the fit Job's summary);
- the `<study>-results` ConfigMap: one compact run result per `<run id>.json` key
  (ftscale.results.parse_result) — generation metrics, wall time and device, which status
  entries leave out. A run the ConfigMap lacks is reported from its status entry;
- the `<study>-fit-input` ConfigMap: `fit-input.json`, the fit Job's own input. The fit is run
  again from it with the fit Job's function (ftscale.law.job.fit_document), which is
  deterministic (the bootstrap's seed is in the input), so the report shows status.fit's
  numbers, with the plots and intervals a 4 KB summary cannot carry.

A study that is not fitted (still running, or its fit failed) gets the results table, the
failed runs and the spec, and a note saying why there is no fit. Flow:

    body = read_study(kube, namespace, name)                      # or the operator's cache
    inputs = load_inputs(body, kube_configmap_reader(kube))
    model, study_fit = build_model(inputs)
    write_report(directory, inputs)                               # report.html + report.md
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftscale import grid
from ftscale.api.phases import FIT_SUCCEEDED_PHASE, FITTED
from ftscale.api.status import result_from_entry
from ftscale.controller import names
from ftscale.results import ResultError, RunResult, parse_result

# (namespace, ConfigMap name) → its data, or None when it does not exist.
ConfigMapReader = Callable[[str, str], "Mapping[str, str] | None"]


class StudyNotFound(LookupError):
    """The ScalingStudy does not exist (HTTP 404)."""


# ---- reading through the API (the one transport: ftscale.controller.kube.Kube.request) -------
def study_path(namespace: str, name: str) -> str:
    return (f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{namespace}/{names.PLURAL}/"
            f"{name}")


def configmap_path(namespace: str, name: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps/{name}"


def read_study(kube, namespace: str, name: str) -> dict[str, Any]:
    """GET the ScalingStudy (raw JSON). Raises StudyNotFound, else the client's ApiException
    (403: the caller may not get scalingstudies in that namespace)."""
    from ftscale.controller.kube import NotFound

    try:
        return kube.request("GET", study_path(namespace, name))
    except NotFound:
        raise StudyNotFound(f"no ScalingStudy {namespace}/{name}") from None


def kube_configmap_reader(kube) -> ConfigMapReader:
    """A ConfigMapReader over a ftscale.controller.kube.Kube: one GET per call (the browser
    caches what it renders from them)."""
    from ftscale.controller.kube import NotFound

    def read(namespace: str, name: str) -> Mapping[str, str] | None:
        try:
            return kube.request("GET", configmap_path(namespace, name)).get("data") or {}
        except NotFound:
            return None
    return read


# ---- what the report depends on --------------------------------------------------------------
def is_fitted(status: Mapping[str, Any] | None) -> bool:
    """status.fit holds a succeeded fit (of the current or of an earlier set of results)."""
    return ((status or {}).get("fit") or {}).get("phase") == FIT_SUCCEEDED_PHASE


def report_key(body: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(namespace, name, uid, digest): a rendered report stays right while this is unchanged.
    The digest covers every recorded run's outcome and loss and the law options (the fit
    input digest, ftscale.controller.plan.fit_input_digest) and the fit the status holds, so a
    new result, a re-fit or a finished fit makes a new key."""
    import hashlib

    from ftscale.controller.plan import fit_input_digest

    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    fit = status.get("fit") or {}
    basis = [fit_input_digest(body.get("spec") or {}, status.get("results") or ()),
             fit.get("phase"), fit.get("inputDigest")]
    digest = hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]
    return (meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), digest)


@dataclass(frozen=True)
class ReportInputs:
    """Everything a cluster study's report is made of, read once."""

    namespace: str
    name: str
    spec: dict[str, Any]  # with the CRD's defaults (ftscale.spec.with_defaults)
    status: dict[str, Any]
    results: dict[str, RunResult]  # by run id: the ConfigMap's, else the status entry's
    fit_input: dict[str, Any] | None  # the fit Job's input; None when the study is not fitted
    notes: tuple[str, ...]  # what the reader should know about where the numbers come from
    source: str  # for the page's "generated from" line


def results_of(study: str, status: Mapping[str, Any], data: Mapping[str, str] | None
               ) -> tuple[dict[str, RunResult], list[str]]:
    """Run results by run id: every status.results entry, replaced by the results ConfigMap's
    fuller result for the same run where the ConfigMap has one (and results the ConfigMap
    holds before the status names them). Returns (results, notes on unreadable entries)."""
    out = {e["runId"]: result_from_entry(study, e)
           for e in status.get("results") or () if e.get("runId")}
    notes = []
    if data is None:
        if out:
            notes.append(f"the results ConfigMap {names.results_configmap_name(study)} was not "
                         "found: runs are reported from status.results (no generation "
                         "metrics, wall time or device)")
        return out, notes
    for key in sorted(data):
        if not key.endswith(".json"):
            continue
        try:
            result = parse_result(data[key])
        except ResultError as exc:
            notes.append(f"{names.results_configmap_name(study)}[{key}] is not a run result "
                         f"({exc}); its status entry is used")
            continue
        out[result.run_id] = result
    return out, notes


def _condition_message(status: Mapping[str, Any], kind: str) -> str:
    for c in status.get("conditions") or ():
        if c.get("type") == kind:
            return str(c.get("message") or "")
    return ""


def fit_input_of(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any],
                 read: ConfigMapReader) -> tuple[dict[str, Any] | None, list[str]]:
    """The fit Job's input for a fitted study, from `<study>-fit-input`; (None, why) when the
    study has no succeeded fit. A ConfigMap that is gone is rebuilt from status.results the
    way the operator built it (ftscale.controller.plan.fit_input_document)."""
    fit = status.get("fit") or {}
    if not is_fitted(status):
        if fit.get("phase"):
            why = f"the fit failed ({fit.get('reason') or 'no reason'}): {fit.get('message') or ''}"
        else:
            why = "not fitted yet" + (f": {m}" if (m := _condition_message(status, FITTED))
                                      else "")
        return None, [why.strip()]
    cm = names.fit_input_configmap_name(name)
    data = read(namespace, cm)
    text = (data or {}).get(names.FIT_INPUT_FILE)
    if text is None:
        from ftscale.controller.plan import fit_input_document

        doc = fit_input_document(name, spec, status.get("results") or (), fit.get("inputDigest"))
        return doc, [f"the fit input ConfigMap {cm} was not found: the fit input was rebuilt "
                     f"from status.results, as the operator builds it"]
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{cm}[{names.FIT_INPUT_FILE}] is not JSON: {exc}") from None
    notes = []
    if doc.get("inputDigest") != fit.get("inputDigest"):
        # The operator replaces the fit input when it starts a new fit (the grid grew, law
        # options changed); status.fit keeps the old fit until the new one finishes.
        notes.append(f"{cm} holds the input of a newer fit (digest {doc.get('inputDigest')}) "
                     f"than status.fit ({fit.get('inputDigest')}): this report fits the newer "
                     "input")
    return doc, notes


def load_inputs(body: Mapping[str, Any], read: ConfigMapReader) -> ReportInputs:
    """A ScalingStudy (as the API returns it) and a ConfigMap reader → the report's inputs.
    Two ConfigMap reads at most. Raises ValueError on a fit input that is not JSON; the
    reader's API errors pass through."""
    from ftscale.spec import with_defaults

    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    spec = with_defaults(dict(body.get("spec") or {}))
    status = dict(body.get("status") or {})
    results, notes = results_of(name, status, read(namespace, names.results_configmap_name(name)))
    fit_input, fit_notes = fit_input_of(namespace, name, spec, status, read)
    source = (f"ScalingStudy {namespace}/{name} (generation {meta.get('generation', '?')}, "
              f"phase {status.get('phase') or 'Pending'})")
    return ReportInputs(namespace, name, spec, status, results, fit_input,
                        tuple(fit_notes + notes), source)


# ---- the fit and the page --------------------------------------------------------------------
def refit(inputs: ReportInputs):
    """(StudyFit or None, notes, seconds): the fit Job's function on the fit Job's input."""
    from ftscale.law import FitError, LawInputError
    from ftscale.law.job import fit_document

    if inputs.fit_input is None:
        return None, [], None
    started = time.monotonic()
    try:
        study_fit, _counts = fit_document(inputs.fit_input)
    except (LawInputError, FitError) as exc:
        return None, [f"the fit input could not be fitted again: {exc}"], None
    return study_fit, [], time.monotonic() - started


def build_model(inputs: ReportInputs, *, generated: str | None = None):
    """(ReportModel, StudyFit or None, planned runs, notes): re-fits (seconds for a bootstrap
    of hundreds of resamples) and draws the plots."""
    from ftscale.report.build import build_report_model

    runs = grid.expand(inputs.spec)
    study_fit, fit_notes, seconds = refit(inputs)
    notes = list(inputs.notes) + fit_notes
    model = build_report_model(inputs.name, inputs.spec, runs, inputs.results, study_fit,
                               notes, source=inputs.source, generated=generated,
                               fit_seconds=seconds)
    return model, study_fit, runs, notes


def render_markdown_report(inputs: ReportInputs, model, study_fit, runs, notes) -> str:
    """report.md: the summary, the results tables, the failed runs, the fit's sections (as
    `ftscale run` writes them: ftscale.local.report, ftscale.law.render_markdown), notes."""
    from ftscale.local.report import (failed_table, fit_sections, generation_section,
                                      results_table)

    results = {r.run_id: inputs.results[r.run_id] for r in runs if r.run_id in inputs.results}
    lines = [f"# Scaling study `{inputs.name}`", "",
             f"Generated {model.generated} by ftscale from {inputs.source}. The plots are in "
             "report.html next to this file.", ""]
    lines += [f"- **{label}**: {value}" for label, value in model.summary]
    lines += ["", "## Results: test loss (nats/token)", "", *results_table(runs, results), ""]
    for metric in model.metric_names:
        lines += generation_section(runs, results, metric)
    failed = failed_table(runs, results)
    if failed:
        lines += ["### Failed runs", "", *failed, ""]
    lines += fit_sections(study_fit, notes)
    return "\n".join(lines)


def default_output(name: str) -> Path:
    return Path(f"{name}-report")


def write_report(directory: str | os.PathLike, inputs: ReportInputs) -> tuple[Path, Path]:
    """Write report.html and report.md into `directory` (created); returns their paths."""
    from ftscale.local.workdir import write_atomic
    from ftscale.report.html import write_html

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model, study_fit, runs, notes = build_model(inputs)
    html = write_html(out / "report.html", model)
    md = out / "report.md"
    write_atomic(md, render_markdown_report(inputs, model, study_fit, runs, notes))
    return html, md
