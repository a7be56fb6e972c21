"""Markdown sections of a study's fit, for the report (`ftscale report` embeds them)."""

from __future__ import annotations

from ftscale.law.model import ADDITIVE, MULTIPLICATIVE


def _num(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}g}"


def _with_ci(law, key: str) -> str:
    value = law.params.values().get(key)
    iv = law.intervals.get(key)
    if iv:
        return f"{_num(value)} [{_num(iv[0], 3)}, {_num(iv[1], 3)}]"
    return _num(value)


def render_markdown(study_fit) -> str:
    """Sections: fitted laws with intervals, Δ_fit/Δ_held-out, multiplicative vs additive,
    critical data sizes (with Eq. 3 coefficients), findings in plain words."""
    sf = study_fit
    opts = sf.options
    level = int(round(opts.confidence * 100))
    out = ["## Fitted scaling laws", ""]
    out.append(f"Law: L̂(X, D_f) = A·X^−α·D_f^−β + E (multiplicative) and A·X^−α + B·D_f^−β + E "
               f"(additive); Huber δ = {opts.delta:g} on {opts.residual} residuals, two-stage "
               f"fit (β and E shared per method). Brackets: {level}% bootstrap percentile "
               f"intervals over {opts.bootstrap} resamples of runs" if opts.bootstrap else
               "Brackets: none (bootstrap off)")
    out.append("")
    out.append("Δ: mean absolute deviation |L̂ − L| in nats; bias: the signed mean of L̂ − L (> 0: "
               "the law predicts higher losses than observed). Flags: docs/law.md §9.")
    out.append("")
    out.append("| method | factor | form | A | α | β | E | B | Δ_fit | Δ_held-out | "
               "bias fit / held-out | converged | flags |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for law in sf.laws:
        method = dict(law.group).get("method")
        conv = "yes" if law.convergence.converged else \
            f"**no** ({law.convergence.message[:40]})"
        out.append(f"| {method} | {law.factor} | {law.form} | {_with_ci(law, 'A')} | "
                   f"{_with_ci(law, 'alpha')} | {_with_ci(law, 'beta')} | {_with_ci(law, 'E')} | "
                   f"{_with_ci(law, 'B') if law.form == ADDITIVE else '–'} | "
                   f"{_num(law.delta_fit)} | {_num(law.delta_heldout)} | {_bias(law)} | {conv} | "
                   f"{_flag_cell(law)} |")
    out.append("")
    out += diagnostics_section(list(sf.laws) + list(sf.single_laws))
    if sf.single_laws:
        out += ["### Single-variable laws (A·D_f^−β + E per X)", "",
                "| method | factor | X | A | β | E | Δ_fit | Δ_held-out | bias fit / held-out "
                "| flags |", "|---|---|---|---|---|---|---|---|---|---|"]
        for law in sf.single_laws:
            out.append(f"| {dict(law.group).get('method')} | {law.factor} | {_num(law.x_value)} "
                       f"| {_with_ci(law, 'A')} | {_with_ci(law, 'beta')} | {_with_ci(law, 'E')}"
                       f" | {_num(law.delta_fit)} | {_num(law.delta_heldout)} | {_bias(law)} | "
                       f"{_flag_cell(law)} |")
        out.append("")
    cmp_ = sf.comparison
    out += ["## Multiplicative vs additive (mean absolute deviation on held-out runs)", ""]
    if cmp_.get("per_factor"):
        out += ["| method | factor | multiplicative | additive | better |", "|---|---|---|---|---|"]
        for row in cmp_["per_factor"]:
            out.append(f"| {row['method']} | {row['factor']} | {_num(row['multiplicative'])} | "
                       f"{_num(row['additive'])} | {row['better'] or 'tie'} |")
        out.append(f"| **mean** | | {_num(cmp_['mean_heldout_multiplicative'])} | "
                   f"{_num(cmp_['mean_heldout_additive'])} | {cmp_['better_form'] or 'tie'} |")
    else:
        out.append("Not available: it needs both forms and held-out points.")
    out.append("")
    out += ["## Critical data sizes", "",
            "Finetuning data size at which two methods' fitted laws predict equal loss "
            "(multiplicative law; interval over the bootstrap replicates that cross the same "
            "number of times; \"extrapolated\": outside the data sizes both methods ran at).",
            ""]
    crit = [c for c in sf.critical if c["form"] == MULTIPLICATIVE]
    if crit:
        out += ["| methods | factor | X | critical D_f | interval | below → above |",
                "|---|---|---|---|---|---|"]
        for c in crit:
            pair = " vs ".join(c["methods"])
            flagged = _flagged_names(_pair_laws(sf, c))
            mark_f = f" (flagged fit: {flagged})" if flagged else ""
            if c.get("equal_everywhere"):
                out.append(f"| {pair} | {c['factor']} | {_num(c['x'])} | no crossing | – | "
                           f"equal everywhere{mark_f} |")
                continue
            if c["no_crossing"]:
                out.append(f"| {pair} | {c['factor']} | {_num(c['x'])} | no crossing | – | "
                           f"{c['better_everywhere']} better everywhere{mark_f} |")
                continue
            for r in c["crossings"]:
                iv = r.get("interval")
                ivs = f"[{_num(iv[0], 3)}, {_num(iv[1], 3)}]" if iv else "–"
                mark = "" if r.get("within_observed_range", True) else " (extrapolated)"
                out.append(f"| {pair} | {c['factor']} | {_num(c['x'])} | "
                           f"{_num(r['data_size'])}{mark} | {ivs} | "
                           f"{r['better_below']} → {r['better_above']}{mark_f} |")
        out.append("")
    else:
        out += ["No method pair to compare.", ""]
    if sf.eq3:
        out += ["Eq. 3 coefficients (D_c = H·X^γ when the loss gap equals E1 − E2):", "",
                "| methods | factor | log10 H | γ |", "|---|---|---|---|"]
        for e in sf.eq3:
            iv = e.get("intervals", {})
            lh = _num(e["log10_H"]) + (f" [{_num(iv['log10_H'][0], 3)}, "
                                       f"{_num(iv['log10_H'][1], 3)}]" if "log10_H" in iv else "")
            g = _num(e["gamma"]) + (f" [{_num(iv['gamma'][0], 3)}, {_num(iv['gamma'][1], 3)}]"
                                    if "gamma" in iv else "")
            out.append(f"| {' vs '.join(e['methods'])} | {e['factor']} | {lh} | {g} |")
        out.append("")
    out += ["## Findings", ""] + [f"- {line}" for line in findings(sf)] + [""]
    if sf.notes:
        out += ["Notes:", ""] + [f"- {n}" for n in sf.notes] + [""]
    return "\n".join(out)


def _bias(law) -> str:
    held = "–" if law.bias_heldout is None else f"{law.bias_heldout:+.3g}"
    return f"{law.bias_fit:+.3g} / {held}"


def _flag_cell(law) -> str:
    return ", ".join(f.label() for f in law.flags) if law.flags else "–"


def _name(law) -> str:
    x = f" X={law.x_value:g}" if law.x_value is not None else ""
    return f"{dict(law.group).get('method')}/{law.factor}/{law.form}{x}"


def _flagged_names(laws) -> str:
    """"method/factor/form (Code, Code)" for the flagged laws among `laws`; "" when none."""
    return "; ".join(f"{_name(l)} ({', '.join(sorted({f.code for f in l.flags}))})"
                     for l in laws if l is not None and l.flags)


def _caveat(laws) -> str:
    """The words every finding drawn from a flagged fit carries."""
    names = _flagged_names(laws)
    return (f" **Caution: drawn from flagged fit(s) {names}; not a reliable conclusion as it "
            "stands (see Diagnostics).**" if names else "")


def _pair_laws(sf, c) -> list:
    return [sf.law(m, c["factor"], c["form"]) for m in c["methods"]]


def diagnostics_section(laws) -> list[str]:
    """"### Diagnostics": every flag of every law with its message, or a line saying none."""
    out = ["### Diagnostics", ""]
    flagged = [l for l in laws if l.flags]
    if not flagged:
        return out + [f"No flags on any of the {len(laws)} fitted laws (checks: docs/law.md §9).",
                      ""]
    out.append(f"{len(flagged)} of {len(laws)} fitted laws are flagged; their parameters and "
               "everything derived from them should not be read as they stand.")
    out.append("")
    for law in flagged:
        for f in law.flags:
            out.append(f"- **{_name(law)}** — `{f.label()}`: {f.message}")
    out.append("")
    return out


def findings(sf) -> list[str]:
    """Plain-word statements derived from the numbers (no claim without its number, and none
    from a flagged fit without saying so)."""
    lines = []
    mult = [l for l in sf.laws if l.form == MULTIPLICATIVE]
    flagged = [l for l in list(sf.laws) + list(sf.single_laws) if l.flags]
    if flagged:
        lines.append(f"{len(flagged)} fit(s) are flagged as degenerate or unreliable: "
                     + _flagged_names(flagged) + ".")
    bad = [l for l in sf.laws if not l.convergence.converged]
    if bad:
        lines.append(f"{len(bad)} fit(s) did not converge: " + ", ".join(
            f"{dict(l.group).get('method')}/{l.factor}/{l.form}" for l in bad)
            + " — treat their parameters with suspicion.")
    for method in sf.methods:
        m = {l.factor: l for l in mult if dict(l.group).get("method") == method}
        if "model_size" in m and "pretrain_tokens" in m:
            am, ap = m["model_size"].params.alpha, m["pretrain_tokens"].params.alpha
            word = "more" if am > ap else "less"
            lines.append(f"{method}: model size matters {word} than pretraining data "
                         f"(α_m = {am:.3g} vs α_p = {ap:.3g})."
                         + _caveat([m["model_size"], m["pretrain_tokens"]]))
        if "pet_size" in m:
            at = m["pet_size"].params.alpha
            iv = m["pet_size"].intervals.get("alpha")
            ivs = f" [{iv[0]:.2g}, {iv[1]:.2g}]" if iv else ""
            lines.append(f"{method}: PET-size exponent α_t = {at:.3g}{ivs} — "
                         + ("scaling PET parameters is ineffective." if abs(at) < 0.01
                            else "PET size has a measurable effect.")
                         + _caveat([m["pet_size"]]))
    betas = {dict(l.group).get("method"): l.params.beta for l in mult}
    if len(betas) > 1:
        order = sorted(betas.items(), key=lambda kv: -kv[1])
        lines.append("finetuning data helps most for " + ", then ".join(
            f"{k} (β = {v:.3g})" for k, v in order) + "." + _caveat(mult))
    cmp_ = sf.comparison
    if cmp_.get("better_form"):
        compared = [sf.law(p["method"], p["factor"], form) for p in cmp_["per_factor"]
                    for form in (MULTIPLICATIVE, ADDITIVE)]
        lines.append(f"the {cmp_['better_form']} law extrapolates better on average (held-out "
                     f"MAD {cmp_['mean_heldout_multiplicative']:.4g} multiplicative vs "
                     f"{cmp_['mean_heldout_additive']:.4g} additive; wins "
                     f"{cmp_['multiplicative_wins']} vs {cmp_['additive_wins']})."
                     + _caveat(compared))
    pairs: dict[tuple, list[str]] = {}
    pair_laws: dict[tuple, list] = {}
    for c in sf.critical:
        if c["form"] != MULTIPLICATIVE:
            continue
        key = (" vs ".join(c["methods"]), c["factor"])
        pair_laws[key] = _pair_laws(sf, c)
        if c["crossings"]:
            r = c["crossings"][0]
            mark = "" if r.get("within_observed_range", True) else " (extrapolated)"
            pairs.setdefault(key, []).append(
                f"X = {c['x']:.3g}: {r['better_below']} below ≈ {r['data_size']:.3g} examples"
                f"{mark}, {r['better_above']} above")
        elif c.get("equal_everywhere"):
            pairs.setdefault(key, []).append(f"X = {c['x']:.3g}: equal at every data size")
        else:
            pairs.setdefault(key, []).append(
                f"X = {c['x']:.3g}: {c['better_everywhere']} at every data size")
    for (pair, factor), items in pairs.items():
        lines.append(f"{pair} ({factor}): " + "; ".join(items) + "."
                     + _caveat(pair_laws[(pair, factor)]))
    return lines
