"""A minimal headless-Chromium driver for page tests: no Selenium, no extra packages.

Chromium is started with ``--remote-debugging-pipe``: it reads DevTools protocol (CDP) commands
as NUL-terminated JSON from file descriptor 3 and writes replies and events to descriptor 4.
``bash`` maps two ordinary pipes onto those descriptors (``exec chromium 3<&R 4>&W``), so the
only requirements are a Chromium binary and bash.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--allow-file-access-from-files",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """Path of an installed Chromium/Chrome, or None."""
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class BrowserError(RuntimeError):
    """Chromium reported an error, exited, or did not answer in time."""


class HeadlessChromium:
    """One headless Chromium with one page, driven over CDP.

    Use as a context manager; ``open(path)`` loads a file and waits for its load event,
    ``evaluate(js)`` returns a JSON-able value, ``screenshot(path)`` writes a full-page PNG.
    """

    def __init__(self, executable: str, width: int = 1400, height: int = 900, timeout: float = 30.0) -> None:
        self.executable = executable
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._session: str | None = None

    def __enter__(self) -> "HeadlessChromium":
        self._profile = tempfile.mkdtemp(prefix="xinc-chromium-")
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        # descriptors >= 10 so the redirections 3<& and 4>& never clobber their own sources
        child_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        child_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_read)
        os.close(from_browser_write)
        args = [self.executable, *FLAGS, f"--user-data-dir={self._profile}", "about:blank"]
        self._log = open(Path(self._profile) / "chromium.log", "wb")
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$@" 3<&{child_read} 4>&{child_write}', "chromium", *args],
            pass_fds=(child_read, child_write),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        os.close(child_read)
        os.close(child_write)
        target = self.command("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        attached = self.command("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)
        self._session = attached["sessionId"]
        self.command("Page.enable")
        self.command("Emulation.setDeviceMetricsOverride",
                     {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return self

    def __exit__(self, *_: Any) -> None:
        try:
            self.command("Browser.close", session=False)
            self._process.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self._process.kill()
            self._process.wait(timeout=10)
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)
            self._log.close()
            shutil.rmtree(self._profile, ignore_errors=True)

    def command(self, method: str, params: dict[str, Any] | None = None, session: bool = True) -> dict[str, Any]:
        """Send one CDP command (to the page session unless ``session=False``) and return its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        reply = self._receive(lambda m: m.get("id") == self._next_id)
        if "error" in reply:
            raise BrowserError(f"{method} failed: {reply['error']}")
        return reply.get("result", {})

    def open(self, path: Path) -> None:
        """Load ``path`` as a ``file://`` URL and wait for its load event (images included)."""
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        result = self.command("Page.navigate", {"url": Path(path).resolve().as_uri()})
        if result.get("errorText"):
            raise BrowserError(f"cannot open {path}: {result['errorText']}")
        self._receive(lambda m: m.get("method") == "Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.command("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"JavaScript failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """Write a PNG of the whole page (up to 8000 CSS pixels tall) to ``path``."""
        size = self.command("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": max(size["width"], 1), "height": min(max(size["height"], 1), 8000), "scale": 1}
        shot = self.command("Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True})
        data = shot["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def _receive(self, wanted: Any) -> dict[str, Any]:
        """Read messages until one satisfies ``wanted``; keep the others as events."""
        for index, event in enumerate(self._events):
            if wanted(event):
                return self._events.pop(index)
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                message = json.loads(raw)
                if wanted(message):
                    return message
                self._events.append(message)
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(remaining, 0))
            if not ready:
                raise BrowserError(f"Chromium did not answer within {self.timeout} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium exited (code {self._process.poll()}); log in {self._log.name}")
            self._buffer += chunk
