"""Pass a candidate's streamed answer to the client, and settle the call however it ends.

The upstream's bytes are passed on as they came, but whole events only (up to the blank line
that ends each): an event cut off by a break is never sent, so the ``error`` event that says
so is read as an event of its own, not glued to half of one.

:class:`RelayedStream` settles exactly once: at the end of the upstream's bytes after its
``[DONE]`` (a success, with the usage read off the passing events), when they break or end
without ``[DONE]`` (a failure, told to the client as an ``error`` event and ``[DONE]``, never
a silent truncation; an Anthropic stream ends with ``[DONE]`` once translated only if it sent
``message_stop``), or when it is closed or dropped before either, such as by a client that
left or a cancelled request (the admission is released: a probe's slot is freed, the circuit
unchanged; ``on_abandon`` is told, so that the call's span ends too). A class rather than an
async generator because a generator never started runs no ``finally`` when closed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Callable

import msgspec
import structlog

from libs.common.schemas.llm import Usage
from libs.common.unreadable_json import UNREADABLE_JSON
from services.provider_router.circuit_breaker import Admission
from services.provider_router.live_stats import LiveStats
from services.provider_router.upstreams import usage_in

# Every chunk may carry "usage": null (OpenAI's do with include_usage); only an object is read,
# however the server spaces its JSON (compact, or as Python's json.dumps writes it).
_USAGE_OBJECT = re.compile(rb'"usage"\s*:\s*\{')
# The blank line that ends an event: two line ends alike (CRLF, LF or CR, as SSE allows).
_EVENT_END = re.compile(rb"(\r\n|\n|\r)\1")

logger = structlog.get_logger("pas.router")


class RelayedStream:
    """The chosen candidate's SSE bytes on their way to the client, passed on as they come,
    in whole events.

    It owns one in-flight count of ``stats`` and the call's ``admission``; ``on_end`` books a
    success (with the usage, if the stream said), ``on_break`` reports a failure's reason,
    ``on_abandon`` a stream closed or dropped before either.
    Close it with :meth:`aclose` (the response's background task).

    The router always asks the upstream for the usage; unless the caller asked too
    (``usage_asked``), the final usage-only chunk (``choices: []``) is read but not passed
    on: OpenAI sends it only when asked, and a client reading ``choices[0]`` of every chunk
    fails on it.
    """

    def __init__(
        self,
        upstream: AsyncGenerator[bytes, None],
        *,
        candidate_id: str,
        admission: Admission,
        stats: LiveStats,
        usage_asked: bool,
        on_end: Callable[[Usage | None], None],
        on_break: Callable[[str], None],
        on_abandon: Callable[[], None],
    ) -> None:
        self._over = False
        self._upstream = upstream
        self._candidate_id = candidate_id
        self._admission = admission
        self._stats = stats
        self._usage_asked = usage_asked
        self._on_end = on_end
        self._on_break = on_break
        self._on_abandon = on_abandon
        self._usage: Usage | None = None
        self._pending = b""
        """Bytes of an event whose end has not come yet."""
        self._done = False
        """Whether ``[DONE]`` has passed: the answer is whole."""

    def __aiter__(self) -> RelayedStream:
        return self

    async def __anext__(self) -> bytes:
        while not self._over:
            try:
                chunk = await anext(self._upstream)
            except StopAsyncIteration:
                return self._close_out()
            except Exception as exc:
                if self._done:  # it broke after its answer was whole
                    self._end()
                    break
                return self._break(str(exc))
            events = self._whole_events(chunk)
            if events:
                return events
        raise StopAsyncIteration

    def _whole_events(self, chunk: bytes) -> bytes:
        """The events ``chunk`` completes (with those held back), to pass on; the rest of an
        event is held until its end comes."""
        # Only the new bytes are searched, from the last line ends an event's end may span.
        searched_from = max(len(self._pending) - 3, 0)
        self._pending += chunk
        ends = [end.end() for end in _EVENT_END.finditer(self._pending, searched_from)]
        if not ends:
            return b""
        events, self._pending = self._pending[: ends[-1]], self._pending[ends[-1] :]
        self._read(events)
        if not self._usage_asked and _USAGE_OBJECT.search(events):
            return _without_usage_only_chunks(events)
        return events

    def _read(self, events: bytes) -> None:
        """Note what the passing events say: the usage (read off the bytes, however the
        server spaces its JSON), and whether the answer is whole (``[DONE]``)."""
        for line in events.splitlines():
            if line.startswith(b"data: {") and _USAGE_OBJECT.search(line):
                self._usage = usage_in(line[6:]) or self._usage
            elif line.removeprefix(b"data:").strip() == b"[DONE]":
                self._done = True

    def _close_out(self) -> bytes:
        """The upstream's bytes are over: the last event, if only its blank line is missing
        (its lines whole), is passed on; then a success if ``[DONE]`` came, else a break."""
        tail, self._pending = self._pending, b""
        last = b""
        if tail.strip() and tail.endswith((b"\n", b"\r")):
            last = tail.rstrip(b"\r\n") + b"\n\n"
            self._read(last)
        if not self._done:
            return last + self._break("ended the stream before [DONE]")
        self._end()
        if last:
            return last
        raise StopAsyncIteration

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

    def _break(self, why: str) -> bytes:
        """A failure after the first bytes: counted, and the events that tell the client (an
        event cut off by it was never sent)."""
        reason = f"stream broke: {why}"
        self._stats.failed += 1
        self._admission.failed(reason)
        self._on_break(reason)
        self._finish()
        logger.warning("stream broke after it began", candidate=self._candidate_id, error=why)
        error = {"message": f"{self._candidate_id} failed mid-stream: {why}", "type": "upstream"}
        return b"data: " + msgspec.json.encode({"error": error}) + b"\n\ndata: [DONE]\n\n"


class _Choices(msgspec.Struct):
    choices: list[msgspec.Raw] | None = None


_decode_choices = msgspec.json.Decoder(_Choices).decode


def _without_usage_only_chunks(events: bytes) -> bytes:
    """``events`` (whole ones) without a chunk that carries the usage and no choice."""
    kept, start = [], 0
    for end in _EVENT_END.finditer(events):
        event, start = events[start : end.end()], end.end()
        if not _is_usage_only(event):
            kept.append(event)
    return b"".join(kept)


def _is_usage_only(event: bytes) -> bool:
    for line in event.splitlines():
        if line.startswith(b"data: {") and _USAGE_OBJECT.search(line):
            try:
                return _decode_choices(line[6:]).choices == []
            except UNREADABLE_JSON:  # nested too deep too: not known to be usage only, kept
                return False
    return False
