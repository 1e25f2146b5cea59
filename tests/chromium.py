"""Headless Chromium from Debian's packages, driven over the DevTools protocol (aiohttp's websocket client) with the
network off: what the tests that open a report in a real browser share. Tests skip when `chromium` is not
installed; .ci/run installs it."""

from __future__ import annotations

import asyncio
import base64
import itertools
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

CHROMIUM = shutil.which("chromium")
_MISSING = "chromium is not installed (apt-get install -y chromium; .ci/run installs it)"
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason=_MISSING)
"""Marks a test that needs the browser; it skips when there is none."""


class Browser:
    """Headless Chromium and one tab, driven over the DevTools protocol; records console errors and requests."""

    def __init__(self, profile: Path) -> None:
        assert CHROMIUM is not None
        flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            # Network off: every host is unresolvable and any proxied request goes to a closed port.
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--remote-debugging-port=0",
            "--window-size=1400,1000",
            f"--user-data-dir={profile}",
            "about:blank",
        ]
        self.process = subprocess.Popen([CHROMIUM, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.loop = asyncio.new_event_loop()
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or len(port_file.read_text().split()) < 2:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.loop.run_until_complete(self._connect(f"ws://127.0.0.1:{port}{path}"))

    async def _connect(self, url: str) -> None:
        self.http = aiohttp.ClientSession()
        self.socket = await self.http.ws_connect(url, max_msg_size=0)
        target = await self._call("Target.createTarget", url="about:blank")
        attached = await self._call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            await self._call(f"{domain}.enable", session=self.session)

    async def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        number = next(self._ids)
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self.socket.send_json(message)
        while True:
            reply = await asyncio.wait_for(self.socket.receive_json(), 60)
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply["result"]
                return result
            self.events.append(reply)

    async def _until(self, event: str) -> None:
        while not any(e.get("method") == event for e in self.events):
            self.events.append(await asyncio.wait_for(self.socket.receive_json(), 60))

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """A command to the tab."""
        return self.loop.run_until_complete(self._call(method, session=self.session, **params))

    def open(self, path: Path) -> None:
        """Load a file and wait for its load event; earlier events are forgotten."""
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.loop.run_until_complete(self._until("Page.loadEventFired"))

    def eval(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries (CSP violations among them) seen so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(str(params["exceptionDetails"]))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(str(params.get("args")))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(params["entry"]["text"])
        return found

    def requests(self) -> list[str]:
        """URLs the page requested since it was opened."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path, height: int = 2400) -> Path:
        """A full-width PNG of the page's top `height` pixels."""
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the connection and stop the browser."""
        self.loop.run_until_complete(self._close())
        self.loop.close()
        self.process.terminate()
        self.process.wait(timeout=60)

    async def _close(self) -> None:
        await self.socket.close()
        await self.http.close()


def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    """A browser for a module-scoped fixture (`yield from launch(tmp_path_factory)`), closed after the module's tests;
    skips them when chromium is not installed."""
    if CHROMIUM is None:
        pytest.skip(_MISSING)
    opened = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield opened
    finally:
        opened.close()
