"""Pass a candidate's streamed answer to the client, and settle the call however it ends.

:class:`RelayedStream` settles exactly once: at the end of the upstream's bytes (a success,
with the usage read off the passing bytes), when they break (a failure, told to the client as
an ``error`` event and ``[DONE]``, never a silent truncation), or when it is closed or dropped
before either, such as by a client that left or a cancelled request (the admission is
released: a probe's slot is freed, the circuit unchanged; ``on_abandon`` is told, so that the
call's span ends too). A class rather than an async
generator because a generator never started runs no ``finally`` when closed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable

import msgspec
import structlog

from libs.common.schemas.llm import Usage
from services.provider_router.circuit_breaker import Admission
from services.provider_router.live_stats import LiveStats
from services.provider_router.upstreams import usage_in

# Every chunk may carry "usage": null (OpenAI's do with include_usage); only an object is read,
# however the server spaces its JSON (compact, or as Python's json.dumps writes it).
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')

logger = structlog.get_logger("pas.router")


class RelayedStream:
    """The chosen candidate's SSE bytes on their way to the client, passed on as they come.

    It owns one in-flight count of ``stats`` and the call's ``admission``; ``on_end`` books a
    success (with the usage, if the stream said), ``on_break`` reports a failure's reason,
    ``on_abandon`` a stream closed or dropped before either.
    Close it with :meth:`aclose` (the response's background task).
    """

    def __init__(
        self,
        upstream: AsyncGenerator[bytes, None],
        *,
        candidate_id: str,
        admission: Admission,
        stats: LiveStats,
        on_end: Callable[[Usage | None], None],
        on_break: Callable[[str], None],
        on_abandon: Callable[[], None],
    ) -> None:
        self._over = False
        self._upstream = upstream
        self._candidate_id = candidate_id
        self._admission = admission
        self._stats = stats
        self._on_end = on_end
        self._on_break = on_break
        self._on_abandon = on_abandon
        self._usage: Usage | None = None
        self._pending = b""

    def __aiter__(self) -> RelayedStream:
        return self

    async def __anext__(self) -> bytes:
        if self._over:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._upstream)
        except StopAsyncIteration:
            self._end()
            raise
        except Exception as exc:
            return self._break(exc)
        # Read usage off the passing bytes without holding any of them back.
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            if line.startswith(b"data: {") and _USAGE_OBJECT.search(line):
                self._usage = usage_in(line[6:]) or self._usage
        return chunk

    async def aclose(self) -> None:
        """Stop relaying (the client left, or the response is over) and let the upstream go."""
        self._abandon()
        await self._upstream.aclose()

    def __del__(self) -> None:
        # Dropped unclosed (a response that never started): free the admission all the same.
        self._abandon()

    def _abandon(self) -> None:
        """Over before the end or a break (a no-op after either)."""
        if self._over:
            return
        self._on_abandon()
        self._finish()

    def _finish(self) -> None:
        """Mark the stream over (once) and give back what it holds."""
        if self._over:
            return
        self._over = True
        self._stats.in_flight -= 1
        self._admission.release()  # a no-op once a verdict was given

    def _end(self) -> None:
        if self._over:
            return
        self._admission.succeeded()
        self._on_end(self._usage)
        self._finish()

    def _break(self, exc: Exception) -> bytes:
        reason = f"stream broke: {exc}"
        self._stats.failed += 1
        self._admission.failed(reason)
        self._on_break(reason)
        self._finish()
        logger.warning("stream broke after it began", candidate=self._candidate_id, error=str(exc))
        error = {"message": f"{self._candidate_id} failed mid-stream: {exc}", "type": "upstream"}
        return b"data: " + msgspec.json.encode({"error": error}) + b"\n\ndata: [DONE]\n\n"
