"""The paper's study protocol (§2.1): two-stage fits per method, held-out error, the
multiplicative-vs-additive comparison, critical data sizes between methods, with bootstrap
intervals over runs.

Stage 1 pools the stage-1 factors of a method (default model_size and pretrain_tokens, those
present; with neither present, every factor present) and fits one β and one E shared by them,
with a per-factor (A, α[, B]). Stage 2 fixes β and E and refits (A, α[, B]) for every factor
separately, PET size included. A bootstrap replicate resamples the method's runs (each run
once, whichever factors it belongs to), repeats both stages from the point estimate, and feeds
the critical data sizes of the same replicate index of every method.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ftscale.law.critical import critical_entry, eq3_entry
from ftscale.law.errors import LawInputError
from ftscale.law.fit import (BootstrapSummary, FactorData, FittedLaw, check_enough, finish_law,
                             fit_law, free_mask, joint_points, make_factor, minimise,
                             params_from_theta, replicate_counts)
from ftscale.law.model import ADDITIVE, JOINT_FORMS, MULTIPLICATIVE, SINGLE
from ftscale.law.options import DEFAULT_STAGE1, FACTORS, LawOptions
from ftscale.law.solver import polish
from ftscale.law.threads import single_threaded_blas
from ftscale.results import SUCCEEDED

FIT_SCHEMA = "ftscale.io/fit-result/v1"
SUMMARY_SCHEMA = "ftscale.io/fit-summary/v1"
SUMMARY_LIMIT = 3000  # bytes; the kubelet keeps 4096 of a termination message
D_COLUMN, LOSS_COLUMN = "data_size", "test_loss"
# Critical sizes are compared on the base-model factors only: PET size means different things
# for different methods (prompt length vs LoRA rank) and full-model tuning has none.
CRITICAL_FACTORS = ("model_size", "pretrain_tokens")


@dataclass(frozen=True)
class FactorRows:
    """The runs of one method that sweep one factor. x_column names the X column of the rows
    (model_params / pretrain_tokens / pet_size); rows follow RunResult.row()."""

    factor: str
    x_column: str
    rows: Sequence[Mapping]


@dataclass(frozen=True)
class StudyFit:
    """Everything the study's fit found. to_dict() is the fit-result contract (fit.json)."""

    options: LawOptions
    laws: tuple[FittedLaw, ...]  # joint forms, one per (method, factor, form)
    single_laws: tuple[FittedLaw, ...]
    critical: tuple[dict, ...]
    eq3: tuple[dict, ...]
    comparison: dict
    notes: tuple[str, ...] = ()
    methods: tuple[str, ...] = field(default=())

    def law(self, method: str, factor: str, form: str = MULTIPLICATIVE) -> FittedLaw | None:
        for law in self.laws:
            if dict(law.group).get("method") == method and law.factor == factor \
                    and law.form == form:
                return law
        return None

    def to_dict(self) -> dict:
        return {
            "schema": FIT_SCHEMA,
            "options": self.options.to_spec(),
            "methods": list(self.methods),
            "laws": [_with_method(law) for law in self.laws],
            "single_laws": [_with_method(law) for law in self.single_laws],
            "critical_data_sizes": list(self.critical),
            "eq3": list(self.eq3),
            "form_comparison": self.comparison,
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=2, sort_keys=True, allow_nan=False)

    def to_summary(self, limit: int = SUMMARY_LIMIT) -> dict:
        """Compact summary for a termination message (under `limit` bytes as JSON).

        laws: "method/factor/form" -> values in the order of "cols" (parameters to 8 significant
        digits, Δs, converged); ci: the same keys -> [lo, hi] per interval column (4 digits);
        critical: multiplicative-law crossings per method pair, factor and X (null = none).
        When it does not fit, detail is dropped in this order and listed under "dropped":
        additive intervals, critical sizes, all intervals, additive laws. fit.json keeps all.
        """
        cols = ["A", "E", "alpha", "beta", "B", "dFit", "dHeld", "converged"]
        ci_cols = ["A", "E", "alpha", "beta", "B"]
        laws, cis = {}, {}
        for law in self.laws:
            key = f"{dict(law.group).get('method')}/{law.factor}/{law.form[:3]}"
            vals = law.params.values()
            laws[key] = [_sig(vals.get(c)) for c in ci_cols] + [
                _sig(law.delta_fit, 4), _sig(law.delta_heldout, 4), law.convergence.converged]
            if law.intervals:
                cis[key] = [[_sig(law.intervals[c][0], 4), _sig(law.intervals[c][1], 4)]
                            if c in law.intervals else None for c in ci_cols]
        crit = {}
        for c in self.critical:
            if c["form"] != MULTIPLICATIVE:
                continue
            key = f"{'/'.join(c['methods'])}/{c['factor']}"
            crit.setdefault(key, []).append(
                [_sig(c["x"], 4), [_sig(r["data_size"], 4) for r in c["crossings"]] or None])
        doc = {"schema": SUMMARY_SCHEMA, "cols": cols, "laws": laws, "ci": cis,
               "critical": crit, "betterForm": self.comparison.get("better_form"),
               "dropped": []}
        steps = [
            ("additive intervals", lambda d: d.__setitem__(
                "ci", {k: v for k, v in d["ci"].items() if not k.endswith("/add")})),
            ("critical data sizes", lambda d: d.pop("critical")),
            ("intervals", lambda d: d.pop("ci")),
            ("additive laws", lambda d: d.__setitem__(
                "laws", {k: v for k, v in d["laws"].items() if not k.endswith("/add")})),
        ]
        for name, step in steps:
            if len(_compact(doc).encode()) <= limit:
                break
            step(doc)
            doc["dropped"].append(name)
        return doc

    def summary_json(self, limit: int = SUMMARY_LIMIT) -> str:
        return _compact(self.to_summary(limit))


def _sig(value, digits: int = 8):
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


def _compact(doc) -> str:
    return json.dumps(json_safe(doc), separators=(",", ":"), sort_keys=True, allow_nan=False)


def json_safe(obj):
    """Replace non-finite floats (not valid JSON) by None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def _with_method(law: FittedLaw) -> dict:
    doc = law.to_dict()
    doc["method"] = dict(law.group).get("method")
    return doc


# ---- the protocol --------------------------------------------------------------------------

@dataclass
class _MethodFit:
    name: str
    factors: dict[str, FactorData]
    n_runs: int
    stage1: list[str]
    # per form: (theta1, conv1, dref1), {factor: (theta2, conv2, dref2)}
    stage1_fit: dict = field(default_factory=dict)
    stage2_fit: dict = field(default_factory=dict)
    samples: dict = field(default_factory=dict)  # (form, factor) -> list[LawParams | None]


def fit_study(factors_by_method: Mapping[str, Sequence[FactorRows]],
              options: LawOptions | None = None, progress=None) -> StudyFit:
    """Fit the study: two stages per method and joint form, single laws if asked, critical
    data sizes between every pair of methods, bootstrap intervals for all of it.

    progress: optional callable(n) ticked once per bootstrap replicate.
    Raises LawInputError when a factor's table cannot support its law (message names the
    method and factor).
    """
    options = options or LawOptions()
    with single_threaded_blas():
        return _fit_study(factors_by_method, options, progress)


def _prepare(method: str, frs: Sequence[FactorRows], options: LawOptions,
             notes: list[str]) -> _MethodFit:
    run_ids: dict[str, int] = {}
    factors = {}
    for fr in frs:
        rows = [r for r in fr.rows if r.get("outcome", SUCCEEDED) in (None, SUCCEEDED)]
        if len(rows) < len(fr.rows):
            notes.append(f"{method}/{fr.factor}: {len(fr.rows) - len(rows)} failed run(s) "
                         "left out")
        if fr.factor not in FACTORS:
            raise LawInputError(f"{method}: unknown factor {fr.factor!r}; use "
                                f"{', '.join(FACTORS)}")
        if fr.factor in factors:
            raise LawInputError(f"{method}: factor {fr.factor} given twice; merge its rows")
        x_axis, d_axis = options.holdout.for_factor(fr.factor)
        factors[fr.factor] = make_factor(fr.factor, fr.x_column, rows, D_COLUMN,
                                         LOSS_COLUMN, x_axis, d_axis, run_ids,
                                         f"{method}/{fr.factor}")
    if not factors:
        raise LawInputError(f"{method}: no factor tables; give at least one FactorRows")
    wanted = options.stage1_factors or DEFAULT_STAGE1
    stage1 = [f for f in wanted if f in factors] or list(factors)
    return _MethodFit(method, factors, len(run_ids), stage1)


def _fit_study(factors_by_method, options: LawOptions, progress) -> StudyFit:
    notes: list[str] = []
    methods = [_prepare(m, frs, options, notes) for m, frs in factors_by_method.items()]
    joint_forms = [f for f in options.forms if f in JOINT_FORMS]
    laws: list[FittedLaw] = []
    for mf in methods:
        if not any(f in mf.factors for f in (options.stage1_factors or DEFAULT_STAGE1)):
            notes.append(f"{mf.name}: stage 1 pooled {', '.join(mf.stage1)} (no model-size or "
                         "pretraining-data sweep)")
        for form in joint_forms:
            for name in mf.stage1:
                check_enough(mf.factors[name], form, f"{mf.name}/{name}")
            s1 = [mf.factors[n] for n in mf.stage1]
            mf.stage1_fit[form] = minimise(s1, form, options.residual, options.delta,
                                           options.strategy)
            beta, e = mf.stage1_fit[form][0][:2]
            mf.stage2_fit[form] = {}
            for name, fac in mf.factors.items():
                check_enough(fac, form, f"{mf.name}/{name}", stage2=True)
                mf.stage2_fit[form][name] = minimise([fac], form, options.residual,
                                                     options.delta, options.strategy,
                                                     shared=(beta, e))
    _bootstrap_study(methods, joint_forms, options, progress)
    boot = None
    for mf in methods:
        for form in joint_forms:
            conv1 = mf.stage1_fit[form][1]
            for name, fac in mf.factors.items():
                theta, conv, d_ref = mf.stage2_fit[form][name]
                params = params_from_theta(theta, form, 0, fac.x_ref, d_ref)
                samples = mf.samples.get((form, name), ())
                if options.bootstrap:
                    boot = BootstrapSummary(options.bootstrap,
                                            sum(s is not None for s in samples),
                                            options.confidence, options.seed)
                laws.append(finish_law(form, fac, params, conv, (("method", mf.name),),
                                       samples, boot, stage1=conv1))
    single = []
    if SINGLE in options.forms:
        for mf, (method, frs) in zip(methods, factors_by_method.items()):
            for fr in frs:
                x_axis, d_axis = options.holdout.for_factor(fr.factor)
                rows = [r for r in fr.rows if r.get("outcome", SUCCEEDED) in (None, SUCCEEDED)]
                try:
                    single += fit_law(rows, form=SINGLE, x=fr.x_column, d=D_COLUMN,
                                      loss=LOSS_COLUMN, residual=options.residual,
                                      delta=options.delta, holdout=options.holdout,
                                      bootstrap=options.bootstrap, seed=options.seed,
                                      strategy=options.strategy,
                                      confidence=options.confidence,
                                      group=(("method", method),))
                except LawInputError as exc:
                    notes.append(f"single-variable laws skipped for {method}/{fr.factor}: {exc}")
    critical, eq3s = _critical(methods, laws, joint_forms, options)
    return StudyFit(options, tuple(laws), tuple(single), tuple(critical), tuple(eq3s),
                    compare_forms(laws), tuple(notes), tuple(m.name for m in methods))


def _bootstrap_study(methods: list[_MethodFit], forms, options: LawOptions, progress) -> None:
    if options.bootstrap <= 0 or not forms:
        return
    seeds = np.random.SeedSequence(options.seed).spawn(len(methods))
    for mf, ss in zip(methods, seeds):
        rng = np.random.default_rng(ss)
        for key in [(f, n) for f in forms for n in mf.factors]:
            mf.samples[key] = []
        for _ in range(options.bootstrap):
            counts = replicate_counts(rng, mf.n_runs)
            for form in forms:
                theta1, _, dref1 = mf.stage1_fit[form]
                s1 = [mf.factors[n] for n in mf.stage1]
                pts1 = joint_points(s1, dref1, counts)
                th1, c1 = polish(theta1, pts1, form, options.residual, options.delta,
                                 free_mask(form, len(s1), False), strategy=options.strategy)
                for name, fac in mf.factors.items():
                    theta2, _, dref2 = mf.stage2_fit[form][name]
                    start = np.array(theta2, float)
                    start[:2] = th1[:2]
                    pts2 = joint_points([fac], dref2, counts)
                    th2, c2 = polish(start, pts2, form, options.residual, options.delta,
                                     free_mask(form, 1, True), strategy=options.strategy)
                    ok = c1.converged and c2.converged
                    mf.samples[(form, name)].append(
                        params_from_theta(th2, form, 0, fac.x_ref, dref2) if ok else None)
            if progress:
                progress(1)


def _critical(methods, laws, forms, options):
    by_key = {(dict(l.group)["method"], l.factor, l.form): l for l in laws}
    critical, eq3s = [], []
    for form in forms:
        for i, m1 in enumerate(methods):
            for m2 in methods[i + 1:]:
                for factor in CRITICAL_FACTORS:
                    l1 = by_key.get((m1.name, factor, form))
                    l2 = by_key.get((m2.name, factor, form))
                    if l1 is None or l2 is None:
                        continue
                    xs = sorted(set(m1.factors[factor].points.x.tolist())
                                | set(m2.factors[factor].points.x.tolist()))
                    names = (m1.name, m2.name)
                    d1, d2 = m1.factors[factor].points.d, m2.factors[factor].points.d
                    d_range = (min(d1.min(), d2.min()), max(d1.max(), d2.max()))
                    for x in xs:
                        entry = critical_entry(l1.params, l2.params, x, names, l1.samples,
                                               l2.samples, options.confidence, d_range)
                        critical.append({"form": form, "factor": factor, **entry})
                    if form == MULTIPLICATIVE:
                        e = eq3_entry(l1.params, l2.params, names, l1.samples, l2.samples,
                                      options.confidence)
                        if e:
                            eq3s.append({"form": form, "factor": factor, **e})
    return critical, eq3s


def compare_forms(laws: Sequence[FittedLaw]) -> dict:
    """Multiplicative vs additive on the same split: Δ_held-out per (method, factor), the mean
    over the pairs both forms have, and the form with the lower mean (None on a tie/no data)."""
    rows = {}
    for law in laws:
        key = (dict(law.group).get("method"), law.factor)
        rows.setdefault(key, {})[law.form] = law
    per = []
    for (method, factor), forms in sorted(rows.items(), key=lambda kv: str(kv[0])):
        mul, add = forms.get(MULTIPLICATIVE), forms.get(ADDITIVE)
        if not mul or not add or mul.delta_heldout is None or add.delta_heldout is None:
            continue
        per.append({"method": method, "factor": factor,
                    "multiplicative": mul.delta_heldout, "additive": add.delta_heldout,
                    "multiplicative_fit": mul.delta_fit, "additive_fit": add.delta_fit,
                    "better": MULTIPLICATIVE if mul.delta_heldout < add.delta_heldout
                    else ADDITIVE if add.delta_heldout < mul.delta_heldout else None})
    out = {"per_factor": per, "better_form": None}
    if per:
        m = float(np.mean([p["multiplicative"] for p in per]))
        a = float(np.mean([p["additive"] for p in per]))
        out.update({"mean_heldout_multiplicative": m, "mean_heldout_additive": a,
                    "better_form": MULTIPLICATIVE if m < a else ADDITIVE if a < m else None,
                    "multiplicative_wins": sum(p["better"] == MULTIPLICATIVE for p in per),
                    "additive_wins": sum(p["better"] == ADDITIVE for p in per)})
    return out
