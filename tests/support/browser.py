"""Drive Debian's headless Chromium over the DevTools protocol (no Playwright or Selenium).

``HeadlessChromium`` starts ``chromium`` (or ``chromium-browser``) with remote debugging on a
free port and a throwaway profile; ``open_page`` attaches to its page over a WebSocket
(aiohttp), records console errors, uncaught exceptions and failed loads, and offers
``navigate``, ``evaluate`` and ``screenshot``. Nothing is downloaded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.support.processes import REPO_ROOT

ARTIFACTS = REPO_ROOT / ".pas" / "test-artifacts"


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Page:
    """One browser tab, over its DevTools WebSocket."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()
        self.problems: list[str] = []
        """Console errors, uncaught exceptions and failed loads, as text."""
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[message_id] = answer
        await self._socket.send_json({"id": message_id, "method": method, "params": params})
        reply = await asyncio.wait_for(answer, 30)
        if "error" in reply:
            raise RuntimeError(f"{method} failed: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    async def _read(self) -> None:
        async for message in self._socket:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            data = message.json()
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                self._on_event(data["method"], data.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Page.loadEventFired":
            self._loaded.set()
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.problems.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            described = details.get("exception", {}).get("description") or details.get("text")
            self.problems.append(f"uncaught: {described}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.problems.append(
                f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}"
            )

    async def navigate(self, url: str, *, timeout_s: float = 30) -> None:
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), timeout_s)

    async def evaluate(self, expression: str) -> Any:
        """The expression's value (awaited if it is a promise), as JSON."""
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, timeout_s: float = 30) -> Any:
        """Evaluate until the expression is truthy; its last value either way."""
        deadline = time.monotonic() + timeout_s
        value = await self.evaluate(expression)
        while not value and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            value = await self.evaluate(expression)
        return value

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        picture = base64.b64decode(shot["data"])

        def save() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(picture)

        await asyncio.to_thread(save)
        return path

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()


class HeadlessChromium:
    def __init__(self, binary: str, *, width: int = 1400, height: int = 2000) -> None:
        self._binary = binary
        self._size = f"{width},{height}"
        self._profile = tempfile.TemporaryDirectory(
            prefix="pas-chromium-", ignore_cleanup_errors=True
        )
        self._process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self, *, ready_timeout_s: float = 30) -> HeadlessChromium:
        profile = Path(self._profile.name)
        # Chromium makes its singleton socket's directory in TMPDIR, and leaves it there.
        scratch = profile / "tmp"
        scratch.mkdir()
        self._process = subprocess.Popen(
            [
                self._binary,
                "--headless=new",
                "--no-sandbox",  # tests run as root, where Chromium's sandbox refuses to start
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={self._size}",
                "about:blank",
            ],
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: Chromium's helpers (zygote, renderer, crash handler) go
            # with it on stop, instead of writing on into the profile being deleted.
            start_new_session=True,
        )
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + ready_timeout_s
        while not port_file.exists() or not port_file.read_text().strip():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("headless Chromium did not start")
            time.sleep(0.05)
        self.port = int(port_file.read_text().splitlines()[0])
        return self

    @contextlib.asynccontextmanager
    async def open_page(self) -> AsyncIterator[Page]:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                targets = await response.json()
            target = next(t for t in targets if t["type"] == "page")
            socket = await http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(socket)
            try:
                for domain in ("Page", "Runtime", "Log"):
                    await page.send(f"{domain}.enable")
                yield page
            finally:
                await page.close()

    def stop(self) -> None:
        if self._process is not None:
            group = self._process.pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            # Helpers that outlive the browser would keep writing into the profile.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
            self._process = None
        self._profile.cleanup()
