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
from ftscale.law.options import DEFAULT_STAGE1, FACTORS, LARGEST, NONE, AxisHoldout, LawOptions
from ftscale.law.solver import polish
from ftscale.law.threads import single_threaded_blas
from ftscale.results import SUCCEEDED

FIT_SCHEMA = "ftscale.io/fit-result/v1"
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
    # (method, factor) pairs the results cannot support: {"method", "factor", "reason"}.
    skipped: tuple[dict, ...] = ()

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
            "skipped_factors": list(self.skipped),
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=2, sort_keys=True, allow_nan=False)

    def summary(self):
        """The fit summary (ftscale.api.fit_summary.FitSummary) exactly as the fit Job hands it
        over — written and read back, so that `ftscale run` and the operator see the same
        numbers to the last digit."""
        from ftscale.api.fit_summary import FitSummary

        return FitSummary.parse(FitSummary.from_study_fit(self).to_json())

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


def _prepare(method: str, frs: Sequence[FactorRows], options: LawOptions, forms: Sequence[str],
             notes: list[str], skipped: list[dict]) -> _MethodFit | None:
    """One method's factor tables, split and checked. The one rule for what cannot be fitted:
    a factor whose runs cannot determine its law (too few X or D values, too few points, a
    design that cannot tell α from β) is skipped — recorded in `skipped` with the reason — and
    the rest is fitted. None when nothing of the method is left."""
    run_ids: dict[str, int] = {}
    factors: dict[str, FactorData] = {}
    for fr in frs:
        if fr.factor not in FACTORS:
            raise LawInputError(f"{method}: unknown factor {fr.factor!r}; use "
                                f"{', '.join(FACTORS)}")
        if fr.factor in factors or any(s["method"] == method and s["factor"] == fr.factor
                                       for s in skipped):
            raise LawInputError(f"{method}: factor {fr.factor} given twice; merge its rows")
        rows = [r for r in fr.rows if r.get("outcome", SUCCEEDED) in (None, SUCCEEDED)]
        if len(rows) < len(fr.rows):
            notes.append(f"{method}/{fr.factor}: {len(fr.rows) - len(rows)} failed run(s) "
                         "left out")
        what = f"{method}/{fr.factor}"
        try:
            ids = dict(run_ids)
            factor = _make_factor(fr, rows, options, forms, ids, what, notes)
        except LawInputError as exc:
            skipped.append({"method": method, "factor": fr.factor, "reason": str(exc)})
            continue
        factors[fr.factor] = factor
        run_ids = ids
    stage1 = _checked(method, factors, options, forms, skipped)
    if not factors:
        return None
    return _MethodFit(method, factors, len(run_ids), stage1)


def _make_factor(fr: FactorRows, rows, options: LawOptions, forms, run_ids, what: str,
                 notes: list[str]) -> FactorData:
    """make_factor with the held-out split of the options — except that holding out the
    largest value of an axis (the default) is not done when it would leave a single value of
    that axis to fit: with two model sizes (or two data sizes) the exponent can be fitted, not
    also tested by extrapolation. The note says so."""
    x_axis, d_axis = options.holdout.for_factor(fr.factor)
    factor = make_factor(fr.factor, fr.x_column, rows, D_COLUMN, LOSS_COLUMN, x_axis, d_axis,
                         dict(run_ids), what)
    pts, fit = factor.points, factor.fit_mask
    axes = [("d", "D_f", pts.d)] + ([("x", "X", pts.x)] if fr.x_column is not None else [])
    for axis, label, values in axes if forms else ():
        mode = (x_axis if axis == "x" else d_axis).mode
        if mode == LARGEST and len(np.unique(values[fit])) < 2 <= len(np.unique(values)):
            notes.append(f"{what}: only {len(np.unique(values))} {label} values, so the largest "
                         f"is not held out (Δ_held-out does not measure extrapolation in {label})")
            if axis == "x":
                x_axis = AxisHoldout(NONE)
            else:
                d_axis = AxisHoldout(NONE)
    return make_factor(fr.factor, fr.x_column, rows, D_COLUMN, LOSS_COLUMN, x_axis, d_axis,
                       run_ids, what)


def _checked(method: str, factors: dict[str, FactorData], options: LawOptions, forms,
             skipped: list[dict]) -> list[str]:
    """Drop (into `skipped`) the factors whose fitting set cannot determine the law; returns
    the stage-1 factors. Stage-1 factors need the whole law's points, the others only the
    stage-2 parameters (β and E come from stage 1)."""
    def keep(name: str, stage2: bool) -> bool:
        try:
            for form in forms:
                check_enough(factors[name], form, f"{method}/{name}", stage2=stage2)
        except LawInputError as exc:
            skipped.append({"method": method, "factor": name, "reason": str(exc)})
            del factors[name]
            return False
        return True

    wanted = options.stage1_factors or DEFAULT_STAGE1
    stage1 = [f for f in wanted if f in factors and keep(f, False)]
    if not stage1:  # no model-size or pretraining sweep: stage 1 pools what there is
        stage1 = [f for f in list(factors) if keep(f, False)]
    for name in [f for f in factors if f not in stage1]:
        keep(name, True)
    return stage1


def _fit_study(factors_by_method, options: LawOptions, progress) -> StudyFit:
    notes: list[str] = []
    skipped: list[dict] = []
    joint_forms = [f for f in options.forms if f in JOINT_FORMS]
    if not factors_by_method:
        raise LawInputError("no method has factor tables: nothing to fit")
    prepared = [_prepare(m, frs, options, joint_forms, notes, skipped)
                for m, frs in factors_by_method.items()]
    methods = [mf for mf in prepared if mf is not None]
    if not methods and joint_forms:
        raise LawInputError("no factor of any method could be fitted: " + "; ".join(
            s["reason"] for s in skipped))
    laws: list[FittedLaw] = []
    for mf in methods:
        if not any(f in mf.factors for f in (options.stage1_factors or DEFAULT_STAGE1)):
            notes.append(f"{mf.name}: stage 1 pooled {', '.join(mf.stage1)} (no model-size or "
                         "pretraining-data sweep)")
        for form in joint_forms:
            s1 = [mf.factors[n] for n in mf.stage1]
            mf.stage1_fit[form] = minimise(s1, form, options.residual, options.delta,
                                           options.strategy)
            beta, e = mf.stage1_fit[form][0][:2]
            mf.stage2_fit[form] = {}
            for name, fac in mf.factors.items():
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
        for method, frs in factors_by_method.items():
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
    for item in skipped:
        notes.append(f"{item['method']}/{item['factor']} skipped: {item['reason']}")
    return StudyFit(options, tuple(laws), tuple(single), tuple(critical), tuple(eq3s),
                    compare_forms(laws), tuple(notes), tuple(m.name for m in methods),
                    tuple(skipped))


def _bootstrap_study(methods: list[_MethodFit], forms, options: LawOptions, progress) -> None:
    """Bootstrap replicates of every method's two stages, polished many at a time
    (fit.polish_replicates). The replicates' run draws are the same as one at a time."""
    from ftscale.law.fit import polish_replicates, replicate_chunks

    if options.bootstrap <= 0 or not forms:
        return
    seeds = np.random.SeedSequence(options.seed).spawn(len(methods))
    for mf, ss in zip(methods, seeds):
        rng = np.random.default_rng(ss)
        for key in [(f, n) for f in forms for n in mf.factors]:
            mf.samples[key] = []
        counts = [replicate_counts(rng, mf.n_runs) for _ in range(options.bootstrap)]
        s1 = [mf.factors[n] for n in mf.stage1]
        n_points = sum(int(f.fit_mask.sum()) for f in s1)
        for chunk in replicate_chunks(len(counts), n_points):
            cs = [counts[i] for i in chunk]
            for form in forms:
                theta1, _, dref1 = mf.stage1_fit[form]
                th1, c1 = polish_replicates(s1, dref1, cs, theta1, form, options.residual,
                                            options.delta, free_mask(form, len(s1), False),
                                            options.strategy)
                for name, fac in mf.factors.items():
                    theta2, _, dref2 = mf.stage2_fit[form][name]
                    starts = np.tile(np.asarray(theta2, float), (len(cs), 1))
                    starts[:, :2] = th1[:, :2]  # each replicate's own shared β and e
                    th2, c2 = polish_replicates([fac], dref2, cs, starts, form,
                                                options.residual, options.delta,
                                                free_mask(form, 1, True), options.strategy)
                    mf.samples[(form, name)] += [
                        params_from_theta(t, form, 0, fac.x_ref, dref2)
                        if a.converged and b.converged else None
                        for t, a, b in zip(th2, c1, c2)]
            if progress:
                progress(len(cs))


def _critical(methods, laws, forms, options):
    from ftscale.law.critical import observed_overlap

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
                    # "within the observed range": inside both methods' data sizes
                    d_range = observed_overlap(m1.factors[factor].points.d,
                                               m2.factors[factor].points.d)
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
