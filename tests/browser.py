"""A real headless Chromium (Debian's ``chromium`` package) driven over the Chrome DevTools protocol: load a
page, read the DOM, fill and submit a form, take a screenshot. No browser download, no driver process:
Chromium's own DevTools websocket, spoken with the ``websockets`` package."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Optional

CHROMIUM = os.environ.get("FEATURESTORE_CHROMIUM", "/usr/bin/chromium")
# Flags this machine needs (docs: the machine's notes): as root no sandbox; no GPU; no background
# connections to the closed network (they would be refused, many at a time).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--mute-audio",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


class BrowserError(AssertionError):
    pass


class Browser:
    """One Chromium process and one tab. ``open(url)`` navigates and waits for the load event."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        if not Path(CHROMIUM).exists():
            raise BrowserError(f"{CHROMIUM} not found: install Debian's chromium (infra/setup.sh does)")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="featurestore-chromium-")
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            port = self._port()
            pages = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
            ws = next(p["webSocketDebuggerUrl"] for p in pages if p.get("type") == "page")
            from websockets.sync.client import connect

            self._connection = connect(ws, max_size=None, open_timeout=10)
            self.ws = self._connection.__enter__()
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                  mobile=False)
        self.width, self.height = width, height

    def _port(self) -> int:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrowserError(f"chromium exited {self.proc.returncode} at start")
            if marker.exists() and marker.read_text().strip():
                return int(marker.read_text().splitlines()[0])
            time.sleep(0.05)
        raise BrowserError("chromium did not open its DevTools port")

    # -- protocol ------------------------------------------------------------------------------------------
    def call(self, method: str, **params) -> dict:
        self._id += 1
        my = self._id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            if msg.get("id") == my:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self._event(msg)

    def _event(self, msg: dict) -> None:
        if msg.get("method") == "Page.loadEventFired":
            self._loaded = True

    def _wait_load(self) -> None:
        deadline = time.monotonic() + self.timeout
        while not self._loaded:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError("the page did not finish loading")
            try:
                self._event(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                continue

    # -- what a test does ----------------------------------------------------------------------------------
    def open(self, url: str) -> "Browser":
        self._loaded = False
        res = self.call("Page.navigate", url=url)
        if res.get("errorText"):
            raise BrowserError(f"cannot open {url}: {res['errorText']}")
        self._wait_load()
        return self

    def js(self, expression: str) -> Any:
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression[:80]}: {res['exceptionDetails'].get('text')} "
                               f"{res['exceptionDetails'].get('exception', {}).get('description', '')}")
        return res["result"].get("value")

    def text(self, selector: str = "body") -> Optional[str]:
        return self.js(f"(e => e ? e.innerText : null)(document.querySelector({json.dumps(selector)}))")

    def all_text(self, selector: str) -> list:
        return self.js(f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.textContent)")

    def attrs(self, selector: str, name: str) -> list:
        return self.js(f"Array.from(document.querySelectorAll({json.dumps(selector)}))"
                       f".map(e => e.getAttribute({json.dumps(name)}))")

    def url(self) -> str:
        return self.js("location.href")

    def submit(self, form: str, **fields: str) -> "Browser":
        """Fill the form's fields (by name) and submit it as a person would (its submit button)."""
        self._loaded = False
        assignments = "".join(f"f.elements[{json.dumps(k)}].value = {json.dumps(v)};" for k, v in fields.items())
        self.js(f"(() => {{ const f = document.querySelector({json.dumps(form)}); {assignments} "
                "f.requestSubmit(); })()")
        self._wait_load()
        return self

    def click(self, selector: str) -> "Browser":
        self._loaded = False
        self.js(f"document.querySelector({json.dumps(selector)}).click()")
        self._wait_load()
        return self

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        height = self.height
        if full_page:
            height = max(self.height, min(6000, int(self.js("document.documentElement.scrollHeight"))))
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height, deviceScaleFactor=1,
                      mobile=False)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        if full_page:
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                      deviceScaleFactor=1, mobile=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self._connection.__exit__(None, None, None)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait()
            shutil.rmtree(self.profile, ignore_errors=True)
