"""The study report as one self-contained web page (report.html).

    model = build_report_model(study_name, spec, planned_runs, results_by_run_id,
                               study_fit_or_None, notes)        # ftscale.report.build
    text = render_html(model)                                   # ftscale.report.html
    write_html(path, model)

The model (ftscale.report.model) holds plain values and the plots as inline SVG; the template
(templates/report.html.j2, Jinja2 with autoescaping) escapes every string of it. `ftscale run`
and `ftscale report` write report.html next to report.md (ftscale.local.report); docs/study.md
("The HTML report") says what the page shows.
"""

from ftscale.report.build import build_report_model
from ftscale.report.html import render_html, write_html
from ftscale.report.model import ReportModel

__all__ = ["ReportModel", "build_report_model", "render_html", "write_html"]
