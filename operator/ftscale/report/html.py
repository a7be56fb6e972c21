"""Render report.html from a ReportModel (ftscale.report.model) with Jinja2.

The page is one self-contained file: styles, the table-sorting script and the plots (inline
SVG) are all inside it, and its Content-Security-Policy lets the browser load nothing else —
no network, no other file — and run no script but the page's own (allowed by its hash), so
even a mistake in escaping could not run a study author's script. Autoescaping is on: every
string of the model is escaped, and only the plots' SVG is inserted as markup.
"""

from __future__ import annotations

import base64
import hashlib
import math
import os
from functools import lru_cache
from pathlib import Path

from markupsafe import Markup

from ftscale.report.model import ReportModel

TEMPLATE = "report.html.j2"
SCRIPT = "sort.js"


def num(value, digits: int = 4) -> str:
    """A number as the tables show it: `digits` significant digits; '–' for none/NaN/inf."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}g}"


def sort_key(value) -> str:
    """The data-sort attribute of a numeric cell: the full value, '' for none (sorts last)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(float(value))


def interval(low, high, digits: int = 3) -> str:
    if low is None or high is None:
        return ""
    return f"[{num(low, digits)}, {num(high, digits)}]"


@lru_cache(maxsize=1)
def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ftscale.report", "templates"),
        autoescape=True,  # the model carries study authors' text: escape all of it
        undefined=jinja2.StrictUndefined,  # a misspelt field fails the render, not the page
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(num=num, sort_key=sort_key, interval=interval)
    return env


def _script() -> str:
    return _environment().loader.get_source(_environment(), SCRIPT)[0].strip()


def script_hash(script: str) -> str:
    """The CSP source expression that allows exactly this inline script."""
    digest = hashlib.sha256(script.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def render_html(model: ReportModel) -> str:
    """The page as text. Raises jinja2.TemplateError only on a bug in the template."""
    script = _script()
    return _environment().get_template(TEMPLATE).render(
        m=model, script=Markup(script), script_src=script_hash(script))


def write_html(path: str | os.PathLike, model: ReportModel) -> Path:
    """Render and write atomically (a reader never sees half a page); returns the path."""
    path = Path(path)
    text = render_html(model)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path
