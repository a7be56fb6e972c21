"""The report's plots as inline SVG text (matplotlib, Agg: no display needed).

* `law_figure`: a fitted law against its runs (seed means, held-out runs hollow, the fitted
  curve per X across the D range) and, beside it, the residuals (observed − fitted) against D;
* `critical_figure`: the critical data size against X per method pair, bootstrap intervals as
  error bars;
* `overview_figure`: the methods compared on each model, with their fitted laws.

Every figure is rendered with its own id salt, so the ids matplotlib gives clip paths and
markers stay unique when many SVGs share one HTML page, and without a date, so the same data
gives the same bytes. Text is kept as SVG <text> (svg.fonttype "none"): smaller than glyph
outlines, searchable, and drawn in the page's own fonts.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from ftscale.report.model import Figure

# Inches: two panels side by side fill a printed A4/Letter text width at about 100 %.
LAW_SIZE = (9.0, 3.4)
CRITICAL_SIZE = (6.0, 3.6)
PANEL_SIZE = (3.4, 3.0)  # one model's panel in the overview
MAX_OVERVIEW_COLUMNS = 4
# One colour per X value: tab10's hues are told apart on screen and on paper, unlike the pale
# end of a sequential map.
X_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
             "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
METHOD_COLOURS = {"fmt": "tab:blue", "lora": "tab:orange", "prompt": "tab:green"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plain(text: str) -> str:
    """Text for a matplotlib label: '$' would start mathtext (and fail on a lone one)."""
    return str(text).replace("$", r"\$")


def to_svg(fig, salt: str, title: str) -> str:
    """The figure as one <svg> element (the XML prologue dropped: it is not HTML), closed,
    with `title` (escaped) as its accessible name."""
    import matplotlib

    plt = _plt()
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    svg = text[text.index("<svg"):].strip()
    # the RDF metadata (creator, licence namespaces) means nothing inside a page
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    head = svg.index(">") + 1
    svg = (svg[:head].replace("<svg ", '<svg role="img" ', 1)
           + f"\n <title>{html.escape(title)}</title>" + svg[head:])
    return drop_unreferenced_ids(svg)


def drop_unreferenced_ids(svg: str) -> str:
    """matplotlib names every group (figure_1, axes_1, text_1 ...): the same ids in every
    figure, which would repeat in a page of many SVGs. Only the ids something points at
    (markers, clip paths: hashed, so unique with the salt) are kept."""
    used = set(re.findall(r'href="#([^"]+)"', svg)) | set(re.findall(r"url\(#([^)]+)\)", svg))

    def strip(tag: re.Match) -> str:  # inside tags only: drawn text may contain 'id="…"'
        return re.sub(r'\s+id="([^"]+)"',
                      lambda m: m.group(0) if m.group(1) in used else "", tag.group(0))

    return re.sub(r"<[^>]+>", strip, svg)


def _d_grid(ds: Sequence[float]) -> np.ndarray:
    ds = [d for d in ds if d and d > 0]
    return np.geomspace(min(ds) / 1.3, max(ds) * 1.3, 100)


def law_figure(law, title: str, salt: str) -> Figure:
    """A FittedLaw (ftscale.law.fit) against its runs, and its residuals."""
    plt = _plt()
    fig, (ax, res) = plt.subplots(1, 2, figsize=LAW_SIZE, gridspec_kw={"width_ratios": [3, 2]})
    xs = sorted({p["x"] for p in law.points})
    grid = _d_grid([p["d"] for p in law.points])
    for i, x in enumerate(xs):
        colour = X_COLOURS[i % len(X_COLOURS)]
        pts = [p for p in law.points if p["x"] == x]
        x_eval = law.x_value if law.x_value is not None else x
        ax.plot(grid, law.params.predict(x_eval, grid), color=colour, lw=1.2)
        for held, style in ((False, {"color": colour, "s": 16}),
                            (True, {"facecolors": "none", "edgecolors": colour, "s": 34,
                                    "lw": 1.3})):
            sel = [p for p in pts if p["heldout"] == held]
            if not sel:
                continue
            label = f"X={x_eval:.3g}" + (" (held out)" if held else "")
            ax.scatter([p["d"] for p in sel], [p["loss"] for p in sel], zorder=3,
                       label=label if not held or not any(not p["heldout"] for p in pts)
                       else None, **style)
            res.scatter([p["d"] for p in sel], [p["loss"] - p["pred"] for p in sel], zorder=3,
                        **style)
    ax.set_xscale("log")
    ax.set_xlabel("finetuning data size D_f")
    ax.set_ylabel("test loss (nats/token)")
    ax.set_title(plain(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="upper right")
    res.axhline(0.0, color="0.4", lw=0.8)
    res.set_xscale("log")
    res.set_xlabel("finetuning data size D_f")
    res.set_ylabel("observed − fitted (nats/token)")
    res.set_title("residuals (hollow: held out)", fontsize=9)
    res.grid(True, which="both", alpha=0.25)
    fig.tight_layout()
    return Figure(title, to_svg(fig, salt, title),
                  "Points: seed-mean test loss of the runs; lines: the fitted law at each X.")


def critical_figure(entries: Sequence[Mapping], title: str, salt: str) -> Figure | None:
    """Critical data size (the first crossing) against X per method pair, for the entries of
    one (form, factor) of StudyFit.critical; None when no pair crosses anywhere."""
    if not any(e["crossings"] for e in entries):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=CRITICAL_SIZE)
    by_pair: dict[str, list[Mapping]] = {}
    for e in entries:
        by_pair.setdefault(" vs ".join(e["methods"]), []).append(e)
    for pair, items in sorted(by_pair.items()):
        xs, ds, lo, hi = [], [], [], []
        for e in items:
            if not e["crossings"] or e.get("x") is None:
                continue
            c = e["crossings"][0]
            xs.append(e["x"])
            ds.append(c["data_size"])
            iv = c.get("interval") or [c["data_size"], c["data_size"]]
            # a percentile interval need not contain the point estimate: clip the bar at it
            lo.append(max(0.0, c["data_size"] - iv[0]))
            hi.append(max(0.0, iv[1] - c["data_size"]))
        if xs:
            ax.errorbar(xs, ds, yerr=[lo, hi], marker="o", capsize=3, label=plain(pair))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("X")
    ax.set_ylabel("critical data size D_f")
    ax.set_title(plain(title), fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return Figure(title, to_svg(fig, salt, title),
                  "The data size at which the two methods' fitted laws predict the same loss "
                  "(first crossing); bars: bootstrap interval.")


def overview_figure(points: Mapping[str, Mapping[str, Mapping[int, float]]],
                    curves: Mapping[str, Mapping[str, np.ndarray]],
                    titles: Mapping[str, str], salt: str) -> Figure | None:
    """One panel per model: each method's seed-mean loss against D (`points[model][method]
    [d]`) and its fitted law evaluated on `curves[model]["d"]` (`curves[model][method]`)."""
    models = [m for m in points if points[m]]
    if not models:
        return None
    plt = _plt()
    ncols = min(MAX_OVERVIEW_COLUMNS, len(models))
    nrows = math.ceil(len(models) / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=True,
                             figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows + 0.3))
    flat = [a for row in axes for a in row]
    for a in flat[len(models):]:
        a.set_visible(False)
    for a, model in zip(flat, models):
        for method, per in points[model].items():
            colour = METHOD_COLOURS.get(method.split(" ")[0])
            ds = sorted(per)
            a.plot(ds, [per[d] for d in ds], "o", color=colour, label=plain(method), ms=4)
            curve = curves.get(model, {})
            if method in curve:
                a.plot(curve["d"], curve[method], "-", color=colour, alpha=0.7, lw=1.2)
        a.set_xscale("log")
        a.set_title(plain(titles.get(model, model)), fontsize=9)
        a.set_xlabel("finetuning examples D_f")
        a.grid(True, which="both", alpha=0.25)
    for row in axes:
        row[0].set_ylabel("test loss (nats/token)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    title = "methods compared on each model"
    return Figure(title, to_svg(fig, salt, title),
                  "Points: seed-mean test loss of each method at its default PET size; lines: "
                  "its fitted multiplicative model-size law.")
