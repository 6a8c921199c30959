"""The shared browser check of reports: open an HTML file in Debian's headless chromium, record
every network request the page makes and every console message and error, keep a screenshot, and
read values from the rendered DOM. Spoken over the DevTools protocol (websocket-client), so that
nothing is missed: a request is seen when it is made, whether or not it could have succeeded.

    result = open_page(path, screenshot=tmp_path / "report.png", script=READ_KPIS)
    assert_self_contained(result)          # fails on any request or console error
"""

from __future__ import annotations

import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import websocket

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
# Every KPI row of a payops report: {name: data-value} as the page shows it.
READ_KPIS = """JSON.stringify(Object.fromEntries(Array.from(document.querySelectorAll('tr[data-kpi]'))
  .map(row => [row.dataset.kpi, row.querySelector('[data-value]').dataset.value])))"""


@dataclass
class PageResult:
    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    value: Any = None


def chromium() -> str:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    raise RuntimeError("no chromium on PATH: scripts/bootstrap installs Debian's chromium")


class DevTools:
    """One page target's DevTools session: commands by id, events kept in arrival order."""

    def __init__(self, url: str, timeout: float) -> None:
        self.timeout = timeout
        self.socket = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        # drain() and wait_for() shorten the socket's timeout: a command gets the whole deadline.
        self.socket.settimeout(self.timeout)
        self.socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_for(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(event["method"] == method for event in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {timeout:g} s")
            self.socket.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                message = json.loads(self.socket.recv())
            except websocket.WebSocketTimeoutException:
                continue
            if "method" in message:
                self.events.append(message)

    def drain(self, quiet: float = 0.5) -> None:
        """Take the events that arrive until none has for `quiet` seconds (late requests, errors)."""
        self.socket.settimeout(quiet)
        while True:
            try:
                message = json.loads(self.socket.recv())
            except websocket.WebSocketTimeoutException:
                return
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        self.socket.close()


def open_page(path: Path, screenshot: Path | None = None, script: str | None = None,
              timeout: float = 90.0) -> PageResult:
    """Load `path` in a fresh headless chromium; the requests it made (but its own document), its
    console errors and uncaught exceptions, a PNG screenshot, and `script`'s value (JSON).
    `timeout` is a deadline for chromium on a loaded machine, not a measure of anything."""
    url = Path(path).resolve().as_uri()
    profile = Path(tempfile.mkdtemp(prefix="payops-chromium-"))
    process = subprocess.Popen(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--metrics-recording-only",
         "--window-size=1200,1600", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _devtools_port(profile, process, timeout)
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=timeout).json()
        page = next(target for target in targets if target["type"] == "page")
        tools = DevTools(page["webSocketDebuggerUrl"], timeout)
        try:
            for domain in ("Network", "Runtime", "Log", "Page"):
                tools.call(f"{domain}.enable")
            tools.call("Page.navigate", url=url)
            tools.wait_for("Page.loadEventFired", timeout)
            tools.drain()
            result = PageResult(url=url)
            if script:
                answer = tools.call("Runtime.evaluate", expression=script, returnByValue=True)
                value = answer.get("result", {}).get("value")
                result.value = json.loads(value) if isinstance(value, str) else value
            if screenshot is not None:
                shot = tools.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = Path(screenshot)
            tools.drain(0.1)
            _collect(tools.events, result)
            return result
        finally:
            tools.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(profile: Path, process: subprocess.Popen[bytes], timeout: float) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"chromium exited with {process.returncode} before it listened")
        if marker.exists():
            text = marker.read_text().split()
            if text:
                return int(text[0])
        time.sleep(0.05)
    raise TimeoutError(f"chromium did not open its DevTools port within {timeout:g} s")


def _collect(events: list[dict[str, Any]], result: PageResult) -> None:
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Network.requestWillBeSent":
            requested = params["request"]["url"]
            # A data: URL is the page's own bytes (and chromium's own images use it), not a request
            # to anywhere; every other scheme but the page itself counts, file: included.
            if requested != result.url and not requested.startswith("data:"):
                result.requests.append(requested)
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(arg.get("value", arg.get("description", ""))) for arg in params.get("args", []))
            result.console_errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            result.console_errors.append(
                f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            result.console_errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}")


def assert_self_contained(result: PageResult) -> None:
    """Fail when the page made any network request or wrote any console error."""
    problems = [f"network request to {url}" for url in result.requests] + result.console_errors
    assert not problems, f"{result.url} is not self-contained: " + "; ".join(problems)
