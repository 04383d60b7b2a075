"""Notice SIGTERM/SIGINT as they arrive, before the server drains its requests.

uvicorn finishes in-flight requests before it runs the app's shutdown, so a long poll (the
registry's blocking watch) would hold a stopping service for its whole wait. A lifespan that
enters :func:`notice_shutdown` is told at once and can let such requests answer now.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@asynccontextmanager
async def notice_shutdown(on_signal: Callable[[], None]) -> AsyncIterator[None]:
    """Call ``on_signal`` in the event loop when SIGTERM or SIGINT arrives, then hand the
    signal on to the server's own handler. Nothing is installed where no server handles the
    signal (outside the main thread, or under a test client), so it is never swallowed."""
    loop = asyncio.get_running_loop()
    replaced: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            server_handler = signal.getsignal(signum)
            if callable(server_handler):
                replaced[signum] = server_handler
                signal.signal(signum, _chained(loop, on_signal, server_handler))
    try:
        yield
    finally:
        for signum, server_handler in replaced.items():
            signal.signal(signum, server_handler)


def _chained(
    loop: asyncio.AbstractEventLoop,
    on_signal: Callable[[], None],
    server_handler: Callable[[int, FrameType | None], Any],
) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(on_signal)
        server_handler(signum, frame)

    return handle
