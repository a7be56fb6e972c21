"""The study browser's reports: rendered on demand (ftscale.report.cluster: two ConfigMap
reads, the fit again, the plots), once per report key, and kept while the study is unchanged.

The key (ftscale.report.cluster.report_key) changes with every recorded result and every fit,
so a kept page is never stale and a page view costs no API call once it is rendered. Renders
run in one worker thread of their own: the fit and matplotlib take seconds of CPU that must
not stall the operator's event loop, and matplotlib's pyplot state is not thread-safe (one
thread at a time draws). Two views of the same study while it renders share one render.
"""

from __future__ import annotations

import asyncio
import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ftscale.report.cluster import ClusterReader, build_model, load_inputs, report_key

# Rendered pages kept (one per study; a page with a dozen plots is ~1 MB).
KEPT_REPORTS = 16


def render_report(body: Mapping[str, Any], read: ClusterReader) -> str:
    """The study's report.html as text (what `ftscale report --study` writes)."""
    from ftscale.report.html import render_html

    model, _fit, _runs, _notes = build_model(load_inputs(body, read))
    return render_html(model)


class ReportCache:
    """Rendered report pages by report key; `get(body)` renders at most once per key."""

    def __init__(self, read: ClusterReader, *, kept: int = KEPT_REPORTS,
                 render: Callable[[Mapping[str, Any], ClusterReader], str] = render_report):
        self.read = read
        self.render = render
        self.kept = kept
        self.renders = 0  # how many pages were rendered (the tests count them)
        self._pages: OrderedDict[tuple, str] = OrderedDict()
        self._inflight: dict[tuple, asyncio.Task] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ftscale-ui-report")

    async def get(self, body: Mapping[str, Any]) -> str:
        """The page for the study as `body` shows it. Raises what rendering raised (the API's
        errors, a fit input that is not JSON); a failure is not kept, the next view retries."""
        key = report_key(body)
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
            return page
        task = self._inflight.get(key)
        if task is None:
            # The render reads its own copy: the reconciler replaces cached bodies, and this
            # thread must never see one change under it.
            task = asyncio.ensure_future(self._render(key, copy.deepcopy(dict(body))))
            self._inflight[key] = task
        # shield: a viewer who goes away does not cancel the render the others wait for.
        return await asyncio.shield(task)

    async def _render(self, key: tuple, body: dict[str, Any]) -> str:
        try:
            page = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.render, body, self.read)
        finally:
            self._inflight.pop(key, None)
        self.renders += 1
        study = key[:3]
        for old in [k for k in self._pages if k[:3] == study]:
            del self._pages[old]  # an older state of the same study: never shown again
        self._pages[key] = page
        while len(self._pages) > self.kept:
            self._pages.popitem(last=False)
        return page

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
