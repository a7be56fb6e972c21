"""A headless Chromium driven over the DevTools protocol, for the browser tests.

Debian's `chromium` (tests/browser/setup.sh installs it; FTSCALE_CHROMIUM names another
binary) runs with --headless and a DevTools port on 127.0.0.1; `websocket-client` (locked,
a dependency of the kubernetes client) speaks the protocol. A `Tab` records what a user's
browser would show a developer: console messages, uncaught exceptions, log entries (CSP
violations, failed loads), every network request and any JavaScript dialog — so a test can
assert "no console errors" and "nothing loaded but the file" — and takes screenshots and PDFs.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import websocket

# Seconds: Chromium starts in ~1 s on an idle machine; a loaded CI runner can take 10×.
START_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0
WINDOW = (1280, 900)
# CSS pixels across the printed text of an A4 page with 12 mm side margins (186 mm at 96 px
# per inch; a Letter page is wider).
PRINT_WIDTH = 703


def chromium_binary() -> str | None:
    """FTSCALE_CHROMIUM, else `chromium` (Debian), `chromium-browser` or `google-chrome`."""
    override = os.environ.get("FTSCALE_CHROMIUM")
    if override:
        return override
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageEvents:
    console: list[dict] = field(default_factory=list)  # {"level", "text"}
    exceptions: list[str] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)  # {"level", "source", "text", "url"}
    requests: list[str] = field(default_factory=list)  # URLs
    dialogs: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        """What a browser's console shows in red: console.error, uncaught exceptions, error log
        entries (CSP violations, failed loads), and any alert/confirm/prompt dialog."""
        out = [f"console.{c['level']}: {c['text']}" for c in self.console
               if c["level"] in ("error", "assert")]
        out += [f"uncaught: {e}" for e in self.exceptions]
        out += [f"log {e['source']} {e['level']}: {e['text']} {e.get('url', '')}"
                for e in self.log if e["level"] == "error"]
        out += [f"dialog: {d}" for d in self.dialogs]
        return out


class Tab:
    """One page target of the browser over its DevTools websocket."""

    def __init__(self, ws_url: str):
        self.ws = websocket.create_connection(ws_url, timeout=COMMAND_TIMEOUT,
                                              suppress_origin=True)
        self.next_id = 0
        self.pending: list[dict] = []  # events not yet waited for
        self.responses: dict[int, dict] = {}  # by command id (a dialog's answer nests a call)
        self.events = PageEvents()
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def close(self) -> None:
        self.ws.close()

    # ---- the protocol ----------------------------------------------------------------------
    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        while mine not in self.responses:
            self._receive()
        msg = self.responses.pop(mine)
        if "error" in msg:
            raise RuntimeError(f"{method}: {msg['error']}")
        return msg.get("result", {})

    def wait_for(self, event: str, timeout: float = COMMAND_TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, msg in enumerate(self.pending):
                if msg.get("method") == event:
                    return self.pending.pop(i)
            self._receive()
        raise TimeoutError(f"no {event} within {timeout} s")

    def _receive(self) -> dict:
        msg = json.loads(self.ws.recv())
        if "id" in msg:
            self.responses[msg["id"]] = msg
            return msg
        method = msg.get("method")
        params = msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.events.console.append({"level": params["type"], "text": text})
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.events.exceptions.append(
                details.get("exception", {}).get("description") or details.get("text", ""))
        elif method == "Log.entryAdded":
            self.events.log.append(params["entry"])
        elif method == "Network.requestWillBeSent":
            self.events.requests.append(params["request"]["url"])
        elif method == "Page.javascriptDialogOpening":
            self.events.dialogs.append(params.get("message", ""))
            self.call("Page.handleJavaScriptDialog", accept=False)
        if method:
            self.pending.append(msg)
            del self.pending[:-200]  # only recent events are waited for
        return msg

    # ---- what the tests use ----------------------------------------------------------------
    def open(self, url: str) -> None:
        """Navigate and wait for the load event (scripts have run, SVGs are laid out)."""
        self.pending.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str):
        """The JSON value of a JavaScript expression (exceptions raise)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}…: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={
                "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.call("Page.captureScreenshot", **params)["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def print_media(self, on: bool) -> None:
        """Lay the page out as it prints (@media print, PRINT_WIDTH wide) — or as on screen
        again."""
        self.call("Emulation.setEmulatedMedia", media="print" if on else "")
        if on:
            self.call("Emulation.setDeviceMetricsOverride", width=PRINT_WIDTH,
                      height=WINDOW[1], deviceScaleFactor=1, mobile=False)
        else:
            self.call("Emulation.clearDeviceMetricsOverride")

    def pdf(self, path: Path) -> Path:
        data = self.call("Page.printToPDF", printBackground=False, preferCSSPageSize=True)["data"]
        path.write_bytes(base64.b64decode(data))
        return path


class Chromium:
    """A headless Chromium with one tab; use as a context manager."""

    def __init__(self, binary: str, workdir: Path):
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=workdir))
        self.log = open(self.profile.parent / "chromium.log", "wb")
        args = [binary, "--headless", "--disable-gpu", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                f"--user-data-dir={self.profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.proc = subprocess.Popen(args + ["about:blank"], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.port = self._port()
            self.tab = Tab(self._page_ws())
        except BaseException:
            self._stop()
            raise

    def _port(self) -> int:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}; see "
                                   f"{self.log.name}")
            if marker.is_file() and marker.read_text().strip():
                return int(marker.read_text().split()[0])
            time.sleep(0.1)
        raise TimeoutError(f"chromium did not open its DevTools port in {START_TIMEOUT} s")

    def _page_ws(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.load(r)
        return next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")

    def close(self) -> None:
        try:
            self.tab.close()
        finally:
            self._stop()

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Tab:
        return self.tab

    def __exit__(self, *exc) -> None:
        self.close()
