"""The study browser's web app (aiohttp, which kopf already runs on): three read-only pages.

    GET /                               every study: phase, runs, GPU-hours, fitted or not
    GET /studies/{namespace}/{name}         one study: progress, conditions, runs, the fit's laws,
                                        links to its report and its Grafana dashboard
    GET /studies/{namespace}/{name}/report  the study's report.html (ftscale.browser.reports)

The list page reads only the operator's watch cache (`bodies()`: the ScalingStudies the
reconciler last saw); a study page also lists the study's results ConfigMaps
(ftscale.api.results_store); a report reads them and the fit input once per change of the
study. Nothing
is ever written: the routes are GET (and HEAD) only, any other method is 405. Pages are
Jinja2 templates with autoescaping, so whatever a study author or a run wrote is shown as
text, and a Content-Security-Policy forbids scripts on the list and study pages altogether.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from aiohttp import web

from ftscale.api import results_store
from ftscale.browser import views
from ftscale.browser.reports import ReportCache
from ftscale.report.cluster import ClusterReader

log = logging.getLogger("ftscale.browser")

Bodies = Callable[[], Iterable[Mapping[str, Any]]]

# No script, no frames, nothing from elsewhere: the pages are text and tables.
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")
# report.html carries its own policy (a <meta>, with its sorting script's hash); the header
# adds what a <meta> policy cannot say.
REPORT_CSP = "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

BODIES_KEY = web.AppKey("bodies", Callable)
CACHE_KEY = web.AppKey("reports", ReportCache)
GRAFANA_KEY = web.AppKey("grafana", str)
READER_KEY = web.AppKey("reader", object)


@lru_cache(maxsize=1)
def environment():
    import jinja2

    from ftscale.report.html import interval, num

    env = jinja2.Environment(
        # report.css comes from the report's templates: one look for both.
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader("ftscale.browser", "templates"),
                                    jinja2.PackageLoader("ftscale.report", "templates")]),
        autoescape=True,  # study authors' and runs' text: escape all of it
        undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=num, interval=interval)
    return env


def render(template: str, **context) -> str:
    return environment().get_template(template).render(
        now=time.strftime("%Y-%m-%d %H:%M:%S %Z"), **context)


def _page(text: str, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _not_found(namespace: str, name: str) -> web.Response:
    return _page(render("message.html.j2", title="No such study",
                        message=f"The operator has no ScalingStudy {namespace}/{name} in its "
                                "cache: it was deleted, or it is in a namespace the operator "
                                "does not watch."), 404)


# ---- handlers ---------------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    rows = views.study_rows(request.app[BODIES_KEY]())
    return _page(render("index.html.j2", rows=rows))


def _study(request: web.Request) -> tuple[str, str, Mapping[str, Any] | None]:
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    return namespace, name, views.find_study(request.app[BODIES_KEY](), namespace, name)


async def study(request: web.Request) -> web.Response:
    namespace, name, body = _study(request)
    if body is None:
        return _not_found(namespace, name)
    reader: ClusterReader = request.app[READER_KEY]
    meta = body.get("metadata") or {}
    try:
        configmaps = await asyncio.get_running_loop().run_in_executor(
            None, reader.list_configmaps, namespace, results_store.label_selector(name))
    except Exception as exc:  # noqa: BLE001 - show the study without its runs, say why
        log.warning("results of %s/%s could not be read: %s", namespace, name, exc)
        configmaps = []
    results = results_store.read_results(name, meta.get("uid"), configmaps).results.values()
    page = views.study_page(body, results, request.app[GRAFANA_KEY])
    return _page(render("study.html.j2", p=page))


async def report(request: web.Request) -> web.Response:
    namespace, name, body = _study(request)
    if body is None:
        return _not_found(namespace, name)
    try:
        text = await request.app[CACHE_KEY].get(body)
    except Exception as exc:  # noqa: BLE001 - say what went wrong on the page, keep serving
        log.warning("report of %s/%s failed: %s: %s", namespace, name, type(exc).__name__, exc)
        forbidden = getattr(exc, "status", None) == 403
        message = (f"The report of {namespace}/{name} could not be made: "
                   f"{type(exc).__name__}: {exc}")
        if forbidden:
            message += (" — the operator may not read ConfigMaps in this namespace: the chart "
                        "grants `get` on configmaps only with ui.enabled=true")
        return _page(render("message.html.j2", title="No report", message=message,
                            back=views.study_url(namespace, name)), 502)
    response = web.Response(text=text, content_type="text/html", charset="utf-8")
    response.headers["Content-Security-Policy"] = REPORT_CSP
    return response


@web.middleware
async def security_headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Live pages: a browser must ask again rather than show an old state.
    response.headers["Cache-Control"] = "no-store"
    return response


def make_app(bodies: Bodies, read_configmap: ClusterReader, grafana_url: str = "",
             cache: ReportCache | None = None) -> web.Application:
    """The app. `bodies()`: the cached ScalingStudies (read, never changed); `read_configmap`:
    the reports' one way to the API (ftscale.report.cluster.kube_reader); `cache`:
    a ReportCache of the caller's (kept across apps; the caller closes it)."""
    app = web.Application(middlewares=[security_headers])
    app[BODIES_KEY] = bodies
    app[CACHE_KEY] = cache or ReportCache(read_configmap)
    app[READER_KEY] = read_configmap
    app[GRAFANA_KEY] = grafana_url
    app.router.add_get("/", index)
    app.router.add_get("/studies/{namespace}/{name}", study)
    app.router.add_get("/studies/{namespace}/{name}/report", report)
    if cache is None:  # a cache passed in belongs to the caller
        async def close_cache(app_: web.Application) -> None:
            app_[CACHE_KEY].close()
        app.on_cleanup.append(close_cache)
    return app


async def start(bodies: Bodies, read_configmap: ClusterReader, port: int,
                bind_address: str = "127.0.0.1", grafana_url: str = "") -> web.AppRunner:
    """Serve the app on bind_address:port in the running event loop; `await runner.cleanup()`
    stops it."""
    runner = web.AppRunner(make_app(bodies, read_configmap, grafana_url), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, bind_address, port).start()
    log.info("study browser on http://%s:%d/", bind_address, port)
    return runner
