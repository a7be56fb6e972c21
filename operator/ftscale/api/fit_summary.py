"""The fit summary: what the fit Job hands the operator (its termination message) and what
`ftscale run` and the operator put into `status.fit`.

One type, `FitSummary`, with one writer (`FitSummary.from_study_fit(...).to_json()`, used by
the fit Job and by `ftscale run`) and one reader (`FitSummary.parse`, used by the operator and
the tests). Every field is named; docs/operator.md documents them. The whole fit (unrounded,
with points, bootstrap details and notes) is fit.json; this summary keeps what a status needs
and must stay under COMPACT_LIMIT bytes, because the kubelet keeps 4096 bytes of a termination
message. When it does not fit, detail is dropped in a fixed order and listed under `dropped`.

Rounding: parameters keep 10 significant digits (for every practical purpose unrounded);
intervals, Δs and critical sizes keep 4.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from ftscale.api.outcomes import COMPACT_LIMIT

SCHEMA = "ftscale.io/fit-summary/v2"
PARAMETERS = ("A", "E", "alpha", "beta", "B")
PARAMETER_DIGITS = 10
DETAIL_DIGITS = 4
REASON_LIMIT = 240
MULTIPLICATIVE, ADDITIVE = "multiplicative", "additive"


class FitSummaryError(ValueError):
    """A fit summary that is missing, corrupt or of another schema."""


@dataclass(frozen=True)
class LawSummary:
    """One fitted law of one method and factor."""

    method: str
    factor: str
    form: str  # multiplicative | additive
    params: Mapping[str, float]  # A, E, alpha, beta (and B for the additive law)
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    delta_fit: float | None = None  # mean absolute deviation on the fitting points (nats)
    delta_heldout: float | None = None  # the same on the held-out points
    converged: bool = True
    flags: tuple[str, ...] = ()  # diagnostic codes (docs/law.md, "Diagnostics")

    def to_dict(self, with_intervals: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method, "factor": self.factor, "form": self.form,
            "params": {k: _sig(v, PARAMETER_DIGITS) for k, v in self.params.items()},
            "deltaFit": _sig(self.delta_fit), "deltaHeldOut": _sig(self.delta_heldout),
            "converged": self.converged, "flags": list(self.flags)}
        if with_intervals and self.intervals:
            out["intervals"] = {k: [_sig(lo), _sig(hi)] for k, (lo, hi) in self.intervals.items()}
        return out


@dataclass(frozen=True)
class CriticalSize:
    """Where the multiplicative laws of two methods cross, at one X of one factor."""

    methods: tuple[str, str]
    factor: str
    x: float
    data_sizes: tuple[float, ...]  # empty: no crossing in the searched range

    def to_dict(self) -> dict[str, Any]:
        return {"methods": list(self.methods), "factor": self.factor, "x": _sig(self.x),
                "dataSizes": [_sig(d) for d in self.data_sizes]}


@dataclass(frozen=True)
class SkippedFactor:
    """A (method, factor) the results cannot support, left out of the fit with the reason."""

    method: str
    factor: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "factor": self.factor,
                "reason": _cap(self.reason, REASON_LIMIT)}


@dataclass(frozen=True)
class FitSummary:
    laws: tuple[LawSummary, ...] = ()
    critical: tuple[CriticalSize, ...] = ()
    better_form: str | None = None  # the form with the lower mean held-out error
    skipped: tuple[SkippedFactor, ...] = ()
    dropped: tuple[str, ...] = ()  # detail left out to stay under the size limit

    # ---- the writer ----
    @classmethod
    def from_study_fit(cls, study_fit) -> "FitSummary":
        """From a ftscale.law.StudyFit (joint-form laws, multiplicative critical sizes)."""
        laws = tuple(
            LawSummary(method=str(dict(law.group).get("method")), factor=law.factor,
                       form=law.form,
                       params={k: v for k, v in law.params.values().items() if k in PARAMETERS
                               and v is not None},
                       intervals={k: tuple(v) for k, v in (law.intervals or {}).items()
                                  if k in PARAMETERS},
                       delta_fit=law.delta_fit, delta_heldout=law.delta_heldout,
                       converged=bool(law.convergence.converged),
                       flags=tuple(f.code for f in getattr(law, "flags", ()) or ()))
            for law in study_fit.laws)
        critical = tuple(
            CriticalSize(methods=tuple(c["methods"]), factor=c["factor"], x=float(c["x"]),
                         data_sizes=tuple(float(r["data_size"]) for r in c["crossings"]))
            for c in study_fit.critical if c["form"] == MULTIPLICATIVE)
        skipped = tuple(SkippedFactor(s["method"], s["factor"], s["reason"])
                        for s in getattr(study_fit, "skipped", ()) or ())
        return cls(laws, critical, study_fit.comparison.get("better_form"), skipped)

    def to_dict(self, limit: int | None = COMPACT_LIMIT) -> dict[str, Any]:
        """The JSON document; with `limit`, detail is dropped until it fits, in this order:
        additive intervals, critical sizes, all intervals, additive laws."""
        doc = self._doc(self.laws, self.critical, additive_intervals=True, intervals=True,
                        dropped=list(self.dropped))
        if limit is None:
            return doc
        steps = (
            ("additive intervals", dict(additive_intervals=False, intervals=True)),
            ("critical data sizes", dict(additive_intervals=False, intervals=True,
                                         critical=False)),
            ("intervals", dict(additive_intervals=False, intervals=False, critical=False)),
            ("additive laws", dict(additive_intervals=False, intervals=False, critical=False,
                                   additive=False)),
        )
        dropped = list(self.dropped)
        for name, how in steps:
            if len(_compact(doc).encode()) <= limit:
                break
            dropped.append(name)
            laws = self.laws if how.get("additive", True) else tuple(
                law for law in self.laws if law.form != ADDITIVE)
            critical = self.critical if how.get("critical", True) else ()
            doc = self._doc(laws, critical, how["additive_intervals"], how["intervals"],
                            dropped)
        if len(_compact(doc).encode()) > limit:  # only very long skip reasons can get here
            doc["skipped"] = [{**s, "reason": _cap(s["reason"], 60)} for s in doc["skipped"]]
        return doc

    def _doc(self, laws, critical, additive_intervals: bool, intervals: bool,
             dropped: list[str]) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "laws": [law.to_dict(with_intervals=intervals and (
                additive_intervals or law.form != ADDITIVE)) for law in laws],
            "critical": [c.to_dict() for c in critical],
            "betterForm": self.better_form,
            "skipped": [s.to_dict() for s in self.skipped],
            "dropped": list(dropped),
        }

    def to_json(self, limit: int | None = COMPACT_LIMIT) -> str:
        return _compact(self.to_dict(limit))

    # ---- the reader ----
    @classmethod
    def parse(cls, doc: str | bytes | Mapping[str, Any]) -> "FitSummary":
        """A summary document (JSON text or an already-decoded mapping, e.g. status.fit) →
        FitSummary. Raises FitSummaryError naming what is wrong."""
        if isinstance(doc, (str, bytes)):
            try:
                doc = json.loads(doc)
            except ValueError as exc:
                raise FitSummaryError(f"fit summary is not JSON: {exc}") from None
        if not isinstance(doc, Mapping):
            raise FitSummaryError("a fit summary must be a JSON object")
        if doc.get("schema") != SCHEMA:
            raise FitSummaryError(f"fit summary schema is {doc.get('schema')!r}, expected "
                                  f"{SCHEMA!r}")
        try:
            laws = tuple(LawSummary(
                method=str(x["method"]), factor=str(x["factor"]), form=str(x["form"]),
                params={k: float(v) for k, v in x["params"].items() if v is not None},
                intervals={k: (float(v[0]), float(v[1])) for k, v in
                           (x.get("intervals") or {}).items() if None not in v},
                delta_fit=_float(x.get("deltaFit")), delta_heldout=_float(x.get("deltaHeldOut")),
                converged=bool(x.get("converged", False)),
                flags=tuple(str(f) for f in x.get("flags") or ())) for x in doc.get("laws") or ())
            critical = tuple(CriticalSize(
                methods=tuple(c["methods"]), factor=str(c["factor"]), x=float(c["x"]),
                data_sizes=tuple(float(d) for d in c.get("dataSizes") or ()))
                for c in doc.get("critical") or ())
            skipped = tuple(SkippedFactor(str(s["method"]), str(s["factor"]), str(s["reason"]))
                            for s in doc.get("skipped") or ())
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise FitSummaryError(f"fit summary is malformed: {type(exc).__name__}: {exc}") \
                from None
        return cls(laws, critical, doc.get("betterForm"), skipped,
                   tuple(str(d) for d in doc.get("dropped") or ()))

    # ---- what consumers ask of it ----
    def parameters(self):
        """(method, factor, form, parameter, value) for every fitted parameter (metrics)."""
        for law in self.laws:
            for name, value in law.params.items():
                if value is not None and math.isfinite(value):
                    yield law.method, law.factor, law.form, name, value

    def headline(self) -> str:
        """One line for a condition message or an Event."""
        mul = [law for law in self.laws if law.form == MULTIPLICATIVE]
        parts = [f"{len(self.laws)} law(s) fitted"]
        if mul:
            parts.append("; ".join(
                f"{law.method}/{law.factor}: alpha={_short(law.params.get('alpha'))} "
                f"beta={_short(law.params.get('beta'))}"
                + (f" [{', '.join(law.flags)}]" if law.flags else "") for law in mul[:4]))
        if self.skipped:
            parts.append(f"{len(self.skipped)} factor(s) skipped: " + "; ".join(
                f"{s.method}/{s.factor}" for s in self.skipped))
        return "; ".join(parts)


def fit_status(job: str | None, input_digest: str | None, phase: str, *,
               summary: FitSummary | None = None, reason: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    """The status.fit document. Every key is always present (None where it does not apply):
    the operator's status write is a JSON merge patch, where a missing key would keep the old
    fit's value and a null removes it — so a new fit replaces every field of the old one."""
    body = summary.to_dict() if summary is not None else {
        "schema": None, "laws": None, "critical": None, "betterForm": None, "skipped": None,
        "dropped": None}
    return {"job": job, "inputDigest": input_digest, "phase": phase, "reason": reason,
            "message": message, **body}


def _sig(value, digits: int = DETAIL_DIGITS):
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _float(value) -> float | None:
    return None if value is None else float(value)


def _short(value) -> str:
    return "–" if value is None else f"{value:.4g}"


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _compact(doc) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False)
