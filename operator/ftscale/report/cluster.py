"""The report of a study on a cluster: load its inputs through the API, re-fit, render.

No pod can ship the report (run and fit pods have no API access, and a termination message
holds 4 KB), so whoever renders it — `ftscale report --study NS/NAME` from a kubeconfig, or the
operator's study browser (ftscale.browser) — builds it from what the cluster keeps:

- the ScalingStudy: its spec (with the API server's defaults) and status (counts, conditions,
  status.fit — the fit Job's summary);
- the `<study>-results-<k>` ConfigMaps (ftscale.api.results_store): every terminal run's
  compact result, the durable record;
- the `<study>-fit-input` ConfigMap: the fit Job's own input (ftscale.api.fit_input). The fit
  is run again from it with the fit Job's function (ftscale.law.job.fit_document), which is
  deterministic (the bootstrap's seed is in the input), so the report shows status.fit's
  numbers, with the plots and intervals a 4 KB summary cannot carry.

A study that is not fitted (still running, or its fit failed) gets the results table, the
failed runs and the spec, and a note saying why there is no fit. Flow:

    body = read_study(kube, namespace, name)                      # or the operator's cache
    inputs = load_inputs(body, kube_reader(kube))
    model, study_fit = build_model(inputs)
    write_report(directory, inputs)                               # report.html + report.md
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ftscale import grid
from ftscale.api import fit_input as fit_input_codec, results_store
from ftscale.api.phases import FIT_SUCCEEDED_PHASE, FITTED
from ftscale.controller import names
from ftscale.results import RunResult


class ClusterReader(Protocol):
    """The two reads a report needs besides the study (ConfigMap objects as the API returns
    them)."""

    def get_configmap(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The ConfigMap, or None when it does not exist."""

    def list_configmaps(self, namespace: str, label_selector: str) -> list[Mapping[str, Any]]:
        """The ConfigMaps that match a label selector."""


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


class kube_reader:  # noqa: N801 - used like a function: kube_reader(kube)
    """A ClusterReader over a ftscale.controller.kube.Kube: one request per call (the browser
    caches what it renders from them)."""

    def __init__(self, kube):
        self.kube = kube

    def get_configmap(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        from ftscale.controller.kube import NotFound

        try:
            return self.kube.request("GET", configmap_path(namespace, name))
        except NotFound:
            return None

    def list_configmaps(self, namespace: str, label_selector: str) -> list[Mapping[str, Any]]:
        return self.kube.list_configmaps(namespace, label_selector)


# ---- what the report depends on --------------------------------------------------------------
def is_fitted(status: Mapping[str, Any] | None) -> bool:
    """status.fit holds a succeeded fit (of the current or of an earlier set of results)."""
    return ((status or {}).get("fit") or {}).get("phase") == FIT_SUCCEEDED_PHASE


def report_key(body: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(namespace, name, uid, digest): a rendered report stays right while this is unchanged.
    The digest covers the spec's generation, the run counts (a recorded result never changes,
    so a new one changes a count) and the fit the status holds, so a new result, a re-fit or
    a finished fit makes a new key."""
    import hashlib

    meta = body.get("metadata") or {}
    status = body.get("status") or {}
    fit = status.get("fit") or {}
    basis = [meta.get("generation"), status.get("runsTotal"), status.get("runsSucceeded"),
             status.get("runsFailed"), fit.get("phase"), fit.get("inputDigest")]
    digest = hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]
    return (meta.get("namespace", ""), meta.get("name", ""), meta.get("uid", ""), digest)


@dataclass(frozen=True)
class ReportInputs:
    """Everything a cluster study's report is made of, read once."""

    namespace: str
    name: str
    spec: dict[str, Any]  # with the CRD's defaults (ftscale.spec.with_defaults)
    status: dict[str, Any]
    results: dict[str, RunResult]  # by run id, from the results ConfigMaps
    fit_input: dict[str, Any] | None  # the fit Job's input; None when the study is not fitted
    notes: tuple[str, ...]  # what the reader should know about where the numbers come from
    source: str  # for the page's "generated from" line


def results_of(study: str, uid: str | None, configmaps: list[Mapping[str, Any]]
               ) -> tuple[dict[str, RunResult], list[str]]:
    """Run results by run id from the study's results ConfigMaps (those its UID owns).
    Returns (results, notes on unreadable entries)."""
    got = results_store.read_results(study, uid, configmaps)
    return got.results, got.notes


def _condition_message(status: Mapping[str, Any], kind: str) -> str:
    for c in status.get("conditions") or ():
        if c.get("type") == kind:
            return str(c.get("message") or "")
    return ""


def fit_input_of(namespace: str, name: str, spec: Mapping[str, Any], status: Mapping[str, Any],
                 results: Mapping[str, RunResult], read: ClusterReader
                 ) -> tuple[dict[str, Any] | None, list[str]]:
    """The fit Job's input for a fitted study, from `<study>-fit-input`; (None, why) when the
    study has no succeeded fit. A ConfigMap that is gone is rebuilt from the recorded results
    the way the operator built it (ftscale.controller.plan.fit_input_document)."""
    fit = status.get("fit") or {}
    if not is_fitted(status):
        if fit.get("phase"):
            why = f"the fit failed ({fit.get('reason') or 'no reason'}): {fit.get('message') or ''}"
        else:
            why = "not fitted yet" + (f": {m}" if (m := _condition_message(status, FITTED))
                                      else "")
        return None, [why.strip()]
    cm = names.fit_input_configmap_name(name)
    encoded = ((read.get_configmap(namespace, cm) or {}).get("binaryData") or {}).get(
        names.FIT_INPUT_FILE)
    if encoded is None:
        from ftscale.controller.plan import fit_input_document

        ordered = [results[rid] for rid in sorted(results)]
        doc = fit_input_document(name, spec, ordered, fit.get("inputDigest"))
        return doc, [f"the fit input ConfigMap {cm} was not found: the fit input was rebuilt "
                     f"from the results ConfigMaps, as the operator builds it"]
    try:
        doc = fit_input_codec.decode_b64(encoded)
    except ValueError as exc:
        raise ValueError(f"{cm}[{names.FIT_INPUT_FILE}] is not a fit input: {exc}") from None
    notes = []
    if doc.get("inputDigest") != fit.get("inputDigest"):
        # The operator replaces the fit input when it starts a new fit (the grid grew, law
        # options changed); status.fit keeps the old fit until the new one finishes.
        notes.append(f"{cm} holds the input of a newer fit (digest {doc.get('inputDigest')}) "
                     f"than status.fit ({fit.get('inputDigest')}): this report fits the newer "
                     "input")
    return doc, notes


def load_inputs(body: Mapping[str, Any], read: ClusterReader) -> ReportInputs:
    """A ScalingStudy (as the API returns it) and a cluster reader → the report's inputs: one
    list of the results ConfigMaps and one read of the fit input. Raises ValueError on a fit
    input that cannot be decoded; the reader's API errors pass through."""
    from ftscale.spec import with_defaults

    meta = body.get("metadata") or {}
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    spec = with_defaults(dict(body.get("spec") or {}))
    status = dict(body.get("status") or {})
    results, notes = results_of(name, meta.get("uid"),
                                read.list_configmaps(namespace, results_store.label_selector(name)))
    terminal = int(status.get("runsSucceeded") or 0) + int(status.get("runsFailed") or 0)
    if len(results) < terminal:
        notes.append(f"the status counts {terminal} finished runs but the results ConfigMaps "
                     f"({results_store.shard_name(name, 0)}, …) hold {len(results)}: the "
                     "missing runs are not in this report (were the ConfigMaps deleted?)")
    fit_input, fit_notes = fit_input_of(namespace, name, spec, status, results, read)
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
