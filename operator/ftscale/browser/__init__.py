"""The read-only study browser the operator serves when `ui_port` is set (FTSCALE_UI_PORT,
`ftscale operator --ui-port`, the chart's ui.enabled): a list of every ScalingStudy, each
study's live page, its report (ftscale.report, rendered on demand) and a link to its Grafana
dashboard. docs/cluster-install.md, "The study browser", says how to open it.

    views    pure: cached ScalingStudies → what the pages show
    reports  the report pages, rendered once per change of a study (ftscale.report.cluster)
    app      the aiohttp app and its server

Off by default. It reads the operator's watch cache (no API call per page view; a report reads
two ConfigMaps once per change of its study) and never writes.
"""

from ftscale.browser.app import make_app, start

__all__ = ["make_app", "start"]
