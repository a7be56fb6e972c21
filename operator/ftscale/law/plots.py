"""PNG charts of fitted laws (matplotlib, Agg backend: no display needed).

* one chart per fitted law: observed seed-mean losses against D (log axis), one colour per X,
  held-out points hollow, the fitted curve per X drawn across the whole D range — dashed,
  with "FLAGGED (codes)" in a red title and a legend entry, when the law has diagnostic flags;
* one chart per (form, factor) of critical data sizes: X against the crossing D per method
  pair (no point where the laws do not cross), with bootstrap intervals as error bars.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ftscale.law.fit import FittedLaw


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def line_style(law: FittedLaw) -> str:
    """Dashed for a law with diagnostic flags (its curve is not a finding), solid otherwise."""
    return "--" if law.flags else "-"


def plot_law(law: FittedLaw, path: Path) -> Path:
    """One law's observed points and fitted curves; returns the written path."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    xs = sorted({p["x"] for p in law.points})
    ds = np.array([p["d"] for p in law.points])
    grid = np.geomspace(ds.min() / 1.3, ds.max() * 1.3, 100)
    cmap = plt.get_cmap("viridis")
    for i, x in enumerate(xs):
        colour = cmap(i / max(1, len(xs) - 1))
        pts = [p for p in law.points if p["x"] == x]
        fit = [p for p in pts if not p["heldout"]]
        held = [p for p in pts if p["heldout"]]
        x_eval = law.x_value if law.x_value is not None else x
        label = f"X={x_eval:.3g}"
        ax.plot(grid, law.params.predict(x_eval, grid), color=colour, lw=1.2,
                ls=line_style(law))
        if fit:
            ax.scatter([p["d"] for p in fit], [p["loss"] for p in fit], color=colour, s=18,
                       label=label, zorder=3)
        if held:
            ax.scatter([p["d"] for p in held], [p["loss"] for p in held], facecolors="none",
                       edgecolors=colour, s=40, lw=1.4, zorder=3,
                       label=None if fit else label + " (held out)")
    ax.set_xscale("log")
    ax.set_xlabel("finetuning data size D_f")
    ax.set_ylabel("test loss (nats/token)")
    v = law.params.values()
    title = (f"{law.label} — {law.form}: A={v['A']:.3g} α={v.get('alpha', 0):.3g} "
             f"β={v['beta']:.3g} E={v['E']:.3g}")
    if law.flags:
        codes = ", ".join(sorted({f.code for f in law.flags}))
        title = f"FLAGGED ({codes})\n{title}"
        ax.plot([], [], color="grey", ls="--", label="flagged fit (docs/law.md §9)")
    ax.set_title(title, fontsize=8, color="firebrick" if law.flags else "black")
    ax.text(0.01, 0.01, f"Δfit={law.delta_fit:.4f}" + (
        f"  Δheld-out={law.delta_heldout:.4f}" if law.delta_heldout is not None else "")
        + "  (hollow = held out)", transform=ax.transAxes, fontsize=7)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_critical(entries: Sequence[dict], title: str, path: Path) -> Path | None:
    """Critical data size against X for each method pair in `entries` (one form, one factor);
    None when no pair crosses anywhere."""
    by_pair: dict[str, list[dict]] = {}
    for e in entries:
        by_pair.setdefault(" vs ".join(e["methods"]), []).append(e)
    if not any(e["crossings"] for e in entries):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for pair, items in sorted(by_pair.items()):
        xs, ds, lo, hi = [], [], [], []
        for e in items:
            if not e["crossings"]:
                continue
            c = e["crossings"][0]  # the smallest crossing: where the ranking first flips
            xs.append(e["x"])
            ds.append(c["data_size"])
            iv = c.get("interval") or [c["data_size"], c["data_size"]]
            # a percentile interval need not contain the point estimate: clip the bar at it
            lo.append(max(0.0, c["data_size"] - iv[0]))
            hi.append(max(0.0, iv[1] - c["data_size"]))
        if xs:
            ax.errorbar(xs, ds, yerr=[lo, hi], marker="o", capsize=3, label=pair)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("X")
    ax.set_ylabel("critical data size D_f (first crossing)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_laws(laws: Sequence[FittedLaw], outdir: str | Path, prefix: str = "law") -> list[Path]:
    out = []
    for law in laws:
        name = _slug(f"{prefix}_{law.label}_{law.form}") + ".png"
        out.append(plot_law(law, Path(outdir) / name))
    return out


def plot_critical_sets(critical: Sequence[dict], outdir: str | Path) -> list[Path]:
    """One critical-size chart per (form, factor) found in `critical`."""
    out = []
    keys = sorted({(c.get("form", ""), c.get("factor") or "") for c in critical})
    for form, factor in keys:
        items = [c for c in critical if c.get("form", "") == form
                 and (c.get("factor") or "") == factor]
        path = Path(outdir) / (_slug(f"critical_{factor}_{form}") + ".png")
        written = plot_critical(items, f"critical data size — {factor} ({form})", path)
        if written:
            out.append(written)
    return out


def plot_study(study_fit, outdir: str | Path) -> list[Path]:
    """Every law chart and critical-size chart of a StudyFit; returns the PNG paths."""
    paths = plot_laws(list(study_fit.laws) + list(study_fit.single_laws), outdir)
    paths += plot_critical_sets(study_fit.critical, outdir)
    return paths
