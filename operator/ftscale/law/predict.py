"""Predictions from a finished fit: `ftscale predict` and `ftscale recommend` (docs/law.md §11).

Sources (one reader each):

* a local fit — `fit.json` of a `ftscale run` workdir (schema ftscale.io/fit-result/v1) or the
  `--json` output of `ftscale fit` (ftscale.io/fit-table/v1). Every law carries its bootstrap
  replicates (`replicates`, rows of `replicate_columns`, aligned by replicate index across the
  laws of one fit), so a prediction's interval is the percentile interval of the replicate
  predictions — the same intervals as the parameters', at the same level.
* a cluster study's `status.fit` (ftscale.api.fit_summary.FitSummary): parameters to 10
  significant digits and parameter intervals, but no replicates. A prediction is then the
  point estimate only, and says so: the parameter intervals cannot be combined into a
  prediction interval without the replicates' joint distribution (A and α alone are ~0.99
  correlated, docs/law.md §9), and an interval built as if they were independent would be
  wildly too wide.

Extrapolation is measured against the fitting points of the law (held-out points excluded:
they were not used to fit), in decades beyond the fitted range of X and of D.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ftscale.law.critical import critical_entry, observed_overlap
from ftscale.law.errors import LawInputError
from ftscale.law.fit import LawParams, percentile_interval
from ftscale.law.model import MULTIPLICATIVE, SINGLE

FIT_RESULT_SCHEMA = "ftscale.io/fit-result/v1"
FIT_TABLE_SCHEMA = "ftscale.io/fit-table/v1"
FROM_FIT_JSON, FROM_STATUS = "fit.json", "status.fit"
NO_REPLICATES = ("the fit holds no bootstrap replicates (status.fit keeps parameters and their "
                 "intervals only), so this is the point estimate without an interval; "
                 "for one, predict from the study's fit.json")
DEFAULT_FACTOR = "model_size"
PET_FACTOR = "pet_size"


@dataclass(frozen=True)
class LawEntry:
    """One fitted law as a prediction source."""

    name: str  # the method (or `ftscale fit` group) it belongs to
    factor: str | None  # model_size | pretrain_tokens | pet_size, or fit's --x column
    x_column: str | None
    form: str
    params: LawParams
    samples: tuple[LawParams | None, ...]  # bootstrap replicates (empty: none kept)
    level: float  # the fit's confidence level
    x_range: tuple[float, float] | None  # fitting points' X range (None: unknown / no X)
    d_range: tuple[float, float] | None
    x_values: tuple[float, ...]  # every X the law was run at (fitting and held-out)
    d_all: tuple[float, ...]  # every D of its points (for critical sizes' observed range)
    flags: tuple[str, ...]
    converged: bool
    source: str

    def matches_factor(self, factor: str) -> bool:
        return factor in (self.factor, self.x_column)


# ---- reading -----------------------------------------------------------------------------------

def load_fit(path: str | Path) -> list[LawEntry]:
    """Laws of a local fit: a workdir (its fit.json) or a fit.json / `ftscale fit --json` file.
    Raises LawInputError naming the problem."""
    p = Path(path)
    if p.is_dir():
        p = p / "fit.json"
    if not p.is_file():
        raise LawInputError(f"{p}: no such file; give a `ftscale run` workdir, its fit.json, or "
                            "the output of `ftscale fit --json`")
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LawInputError(f"{p}: not a JSON fit document ({exc})") from None
    return laws_from_fit_doc(doc, str(p))


def laws_from_fit_doc(doc: Mapping, where: str = "fit") -> list[LawEntry]:
    """Laws of a fit-result (fit.json) or fit-table (`ftscale fit --json`) document."""
    if not isinstance(doc, Mapping):
        raise LawInputError(f"{where}: a fit document is a JSON object")
    schema = doc.get("schema")
    if schema == FIT_RESULT_SCHEMA:
        items = list(doc.get("laws") or []) + list(doc.get("single_laws") or [])
        names = [str(item.get("method")) for item in items]
    elif schema == FIT_TABLE_SCHEMA:
        items = list(doc.get("fits") or [])
        names = [",".join(str(v) for v in (item.get("group") or {}).values()) or "all"
                 for item in items]
    else:
        raise LawInputError(f"{where}: schema {schema!r} is not a fit ({FIT_RESULT_SCHEMA} from "
                            f"`ftscale run`, or {FIT_TABLE_SCHEMA} from `ftscale fit --json`)")
    try:
        return [_entry(item, name) for item, name in zip(items, names)]
    except (KeyError, TypeError, ValueError) as exc:
        raise LawInputError(f"{where}: a law is malformed ({type(exc).__name__}: {exc})") from None


def _entry(item: Mapping, name: str) -> LawEntry:
    form = item["form"]
    params = LawParams(form, float(item.get("log_A", math.nan)), float(item.get("alpha") or 0.0),
                       float(item["beta"]), float(item["log_E"]), _opt(item.get("log_B")),
                       _opt(item.get("log_D_l")))
    cols = item.get("replicate_columns") or []
    samples = tuple(None if row is None or any(v is None for v in row)
                    else LawParams.from_replicate_row(form, cols, row)
                    for row in item.get("replicates") or [])
    points = item.get("points") or []
    fit_pts = [p for p in points if not p.get("heldout")]
    has_x = item.get("x_column") is not None and form != SINGLE
    x_range = (min(p["x"] for p in fit_pts), max(p["x"] for p in fit_pts)) \
        if fit_pts and has_x else None
    d_range = (min(p["d"] for p in fit_pts), max(p["d"] for p in fit_pts)) if fit_pts else None
    level = float((item.get("bootstrap") or {}).get("confidence_level") or 0.95)
    return LawEntry(name, item.get("factor"), item.get("x_column"), form, params, samples, level,
                    x_range, d_range, tuple(sorted({float(p["x"]) for p in points})),
                    tuple(float(p["d"]) for p in points),
                    tuple(f["code"] for f in item.get("flags") or []),
                    bool((item.get("convergence") or {}).get("converged", True)), FROM_FIT_JSON)


def _opt(v) -> float | None:
    return None if v is None else float(v)


def laws_from_status(status_fit: Mapping) -> list[LawEntry]:
    """Laws of a cluster study's status.fit (ftscale.api.fit_summary): point estimates, no
    replicates, no points (so no fitted ranges)."""
    from ftscale.api.fit_summary import FitSummary, FitSummaryError

    try:
        summary = FitSummary.parse(status_fit)
    except FitSummaryError as exc:
        phase = status_fit.get("phase") if isinstance(status_fit, Mapping) else None
        reason = status_fit.get("message") or status_fit.get("reason") \
            if isinstance(status_fit, Mapping) else None
        raise LawInputError(f"the study has no usable fit yet (status.fit phase {phase!r}"
                            + (f": {reason}" if reason else "") + f"; {exc})") from None
    out = []
    for law in summary.laws:
        p = law.params
        if "A" not in p or "E" not in p or "beta" not in p:
            continue
        params = LawParams(law.form, _log(p["A"]), float(p.get("alpha", 0.0)), float(p["beta"]),
                           _log(p["E"]), _log(p["B"]) if "B" in p else None)
        out.append(LawEntry(law.method, law.factor, None, law.form, params, (), 0.95, None, None,
                            (), (), tuple(law.flags), law.converged, FROM_STATUS))
    return out


def _log(v: float) -> float:
    return math.log(v) if v > 0 else -math.inf


def read_study_fit(ref: str, kubeconfig: str | None = None) -> list[LawEntry]:
    """The laws in status.fit of the ScalingStudy NS/NAME, read with the kubernetes client
    (KUBECONFIG or ~/.kube/config, or in-cluster credentials)."""
    ns, sep, name = ref.partition("/")
    if not sep or not ns or not name:
        raise LawInputError(f"--study {ref!r}: give NAMESPACE/NAME")
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    from ftscale.api.meta import GROUP, PLURAL, VERSION
    from ftscale.controller.kube import load_api_client

    try:
        api = client.CustomObjectsApi(load_api_client(kubeconfig))
        obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise LawInputError(f"ScalingStudy {ns}/{name} not found") from None
        raise LawInputError(f"reading ScalingStudy {ns}/{name}: HTTP {exc.status} "
                            f"{exc.reason}") from None
    except Exception as exc:  # no kubeconfig, unreachable API server
        raise LawInputError(f"cannot reach the cluster to read {ns}/{name}: {exc}") from None
    fit = (obj.get("status") or {}).get("fit")
    if not fit:
        raise LawInputError(f"ScalingStudy {ns}/{name} has no status.fit yet (phase "
                            f"{(obj.get('status') or {}).get('phase')!r})")
    return laws_from_status(fit)


# ---- choosing a law ----------------------------------------------------------------------------

def select(entries: Sequence[LawEntry], method: str, factor: str | None = None,
           form: str = MULTIPLICATIVE) -> LawEntry:
    """The law of `method` for `factor` (default model_size, or the method's only factor) in
    `form`. Raises LawInputError listing what the fit has."""
    mine = [e for e in entries if e.name == method and e.form == form]
    if not mine:
        raise LawInputError(f"no {form} law for {method!r} in the fit; it has: "
                            f"{available(entries)}")
    chosen = _by_factor(mine, factor)
    if chosen is None:
        raise LawInputError(f"no {form} law for {method!r} and factor {factor or DEFAULT_FACTOR!r}"
                            f"; it has: {available(entries)}")
    return chosen


def _by_factor(mine: Sequence[LawEntry], factor: str | None) -> LawEntry | None:
    if factor is not None:
        return next((e for e in mine if e.matches_factor(factor)), None)
    found = next((e for e in mine if e.matches_factor(DEFAULT_FACTOR)), None)
    if found is None and len(mine) == 1:  # a method fitted for one factor only
        found = mine[0]
    return found


def available(entries: Sequence[LawEntry]) -> str:
    seen = sorted({f"{e.name}/{e.factor or e.x_column or '-'}/{e.form}" for e in entries})
    return ", ".join(seen) or "no laws"


# ---- predicting --------------------------------------------------------------------------------

def decades_beyond(value: float, rng: tuple[float, float] | None) -> float | None:
    """How far value lies outside [lo, hi], in decades (> 0 above hi, < 0 below lo, 0 inside);
    None when the range is unknown."""
    if rng is None:
        return None
    lo, hi = rng
    if value > hi:
        return math.log10(value / hi)
    if value < lo:
        return -math.log10(lo / value)
    return 0.0


def replicate_predictions(entry: LawEntry, x: float, d: float) -> np.ndarray:
    """The law's prediction under every bootstrap replicate (nan where one was dropped)."""
    return np.array([float(s.predict(x, d)) if s is not None else math.nan
                     for s in entry.samples], float)


def predict(entry: LawEntry, x: float, d: float) -> dict:
    """Predicted loss at (x, d) with its bootstrap interval and how far it extrapolates."""
    _check_point(x, d)
    point = float(entry.params.predict(x, d))
    reps = replicate_predictions(entry, x, d)
    interval = percentile_interval(reps, entry.level) if reps.size else None
    out = {
        "method": entry.name, "factor": entry.factor, "form": entry.form, "x": x, "d": d,
        "predicted_loss": point,
        "interval": list(interval) if interval else None,
        "confidence_level": entry.level if interval else None,
        "replicates": int(np.isfinite(reps).sum()),
        "extrapolation": {
            "x_decades": None if entry.form == SINGLE else decades_beyond(x, entry.x_range),
            "d_decades": decades_beyond(d, entry.d_range),
            "x_range": list(entry.x_range) if entry.x_range else None,
            "d_range": list(entry.d_range) if entry.d_range else None},
        "flags": list(entry.flags), "converged": entry.converged, "source": entry.source,
    }
    if interval is None:
        out["note"] = NO_REPLICATES if entry.source == FROM_STATUS else \
            "the fit kept no bootstrap replicates (run it with --bootstrap N), so no interval"
    return out


def _check_point(x: float, d: float) -> None:
    for label, v in (("--x", x), ("--d", d)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise LawInputError(f"{label} must be a positive number, got {v!r}")


def extrapolation_text(pred: Mapping) -> str:
    """One line on how far a prediction extrapolates beyond the fitted ranges."""
    ex = pred["extrapolation"]
    parts = []
    for axis, key, rng in (("X", "x_decades", ex["x_range"]), ("D", "d_decades", ex["d_range"])):
        dec = ex[key]
        if dec is None:
            if axis == "X" and pred["form"] == SINGLE:
                continue
            parts.append(f"{axis}: fitted range unknown ({pred['source']} keeps no points)")
        elif dec == 0:
            parts.append(f"{axis} within the fitted range [{rng[0]:.3g}, {rng[1]:.3g}]")
        else:
            side = "above the largest" if dec > 0 else "below the smallest"
            parts.append(f"{axis} {abs(dec):.2f} decades {side} fitted {axis} "
                         f"({rng[1] if dec > 0 else rng[0]:.3g})")
    return "; ".join(parts)


# ---- recommending ------------------------------------------------------------------------------

def winner_share(replicates: Sequence[Sequence[float]]) -> float | None:
    """Share of bootstrap replicate indices, among those where every candidate has a
    prediction, in which the first candidate's prediction is the lowest. None without
    replicates for every candidate."""
    if len(replicates) < 2 or any(len(r) == 0 for r in replicates):
        return None
    n = min(len(r) for r in replicates)
    table = np.array([list(r[:n]) for r in replicates], float)  # candidates × replicates
    ok = np.all(np.isfinite(table), axis=0)
    if not ok.any():
        return None
    return float(np.mean(np.argmin(table[:, ok], axis=0) == 0))


def recommend(entries: Sequence[LawEntry], x: float, d: float, *, factor: str | None = None,
              form: str = MULTIPLICATIVE) -> dict:
    """Rank the methods by predicted loss at (x, d); rank each PET method's sizes (its
    pet_size law, at the model its PET-size sweep ran on); the critical data size between the
    best two at x; and how often the winner wins across the bootstrap replicates.

    Replicates are paired by index: a study's bootstrap draws each method's runs
    independently (ftscale.law.study), so replicate i of every method is one joint draw.
    """
    _check_point(x, d)
    methods = sorted({e.name for e in entries if e.form == form})
    laws = [law for law in (_by_factor([e for e in entries if e.name == m and e.form == form],
                                       factor) for m in methods) if law is not None]
    if not laws:
        raise LawInputError(f"no {form} law for factor {factor or DEFAULT_FACTOR!r} in the fit; "
                            f"it has: {available(entries)}")
    preds = sorted((predict(law, x, d) for law in laws), key=lambda p: p["predicted_loss"])
    by_name = {law.name: law for law in laws}
    ranked = [by_name[p["method"]] for p in preds]
    out = {"x": x, "d": d, "form": form, "factor": ranked[0].factor, "ranking": preds,
           "winner": preds[0]["method"], "winner_share": None, "critical": None,
           "pet_sizes": pet_size_rankings(entries, d, form), "notes": []}
    if len(ranked) >= 2:
        out["winner_share"] = winner_share([replicate_predictions(law, x, d) for law in ranked])
        first, second = ranked[0], ranked[1]
        d_range = observed_overlap(first.d_all, second.d_all) if first.d_all and second.d_all \
            else None
        out["critical"] = critical_entry(first.params, second.params, x,
                                         (first.name, second.name), first.samples,
                                         second.samples, first.level, d_range)
        if out["winner_share"] is None:
            out["notes"].append("how sure the ranking is needs bootstrap replicates: " +
                                (NO_REPLICATES if first.source == FROM_STATUS else
                                 "the fit kept none"))
    else:
        out["notes"].append("only one method has a law: nothing to rank it against")
    return out


def pet_size_rankings(entries: Sequence[LawEntry], d: float, form: str) -> list[dict]:
    """Per PET method with a pet_size law: its PET sizes (those it was run at) ranked by
    predicted loss at d, with intervals — at the model its PET-size sweep ran on (the law has
    no model-size term, so this says nothing about another model)."""
    out = []
    for law in entries:
        if law.form != form or law.factor != PET_FACTOR or not law.x_values:
            continue
        preds = sorted((predict(law, size, d) for size in law.x_values),
                       key=lambda p: p["predicted_loss"])
        share = winner_share([replicate_predictions(law, p["x"], d) for p in preds])
        out.append({"method": law.name, "sizes": [
            {"pet_size": p["x"], "predicted_loss": p["predicted_loss"], "interval": p["interval"]}
            for p in preds], "winner_share": share})
    return out
