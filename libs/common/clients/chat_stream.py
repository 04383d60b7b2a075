"""A streamed chat completion: server-sent events read into chunks, until ``[DONE]``."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from libs.common.clients.llm_errors import (
    TRANSPORT_ERRORS,
    LLMTransientError,
    LLMUnusableAnswer,
    transport_failure,
)
from libs.common.schemas.llm import ChatCompletionChunk, Usage
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable


class _StreamError(msgspec.Struct):
    error: Any = None


_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
_decode_stream_error = msgspec.json.Decoder(_StreamError).decode


class SSEDecoder:
    """The ``data`` of each event in a ``text/event-stream`` (the WHATWG HTML rules: lines end
    in CRLF, LF or CR; an empty line ends an event; its ``data:`` lines join with LF, one space
    after the colon dropped; comments and other fields are skipped). Bytes go in as they come;
    complete events' data come out. An event cut off by the end of the stream is dropped, as
    the rules say."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        text = self._pending + chunk
        held_cr = False
        if b"\r" in text:
            if text.endswith(b"\r"):
                # A CR at the end may be the first half of a CRLF whose LF is still to come.
                text, held_cr = text[:-1], True
            text = text.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = text.split(b"\n")
        self._pending = rest + b"\r" if held_cr else rest
        events: list[bytes] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(b"\n".join(self._data))
                    self._data = []
            elif not line.startswith(b":"):  # a colon first: a comment
                field, _, value = line.partition(b":")
                if field == b"data":
                    self._data.append(value[1:] if value.startswith(b" ") else value)
        return events

    def finish(self) -> list[bytes]:
        """At the end of the stream: a CR held back by :meth:`feed` did end its line."""
        return self.feed(b"\n") if self._pending.endswith(b"\r") else []


class ChunkStream:
    """A streamed chat completion, chunk by chunk, until ``[DONE]`` or the end.

    Iterate it (``async for``) and close it (``aclose`` or ``async with``): closing before the
    end drops the connection rather than pooling it. ``usage`` holds the last usage a chunk
    carried (the final chunk, when ``stream_options.include_usage`` is honoured), else ``None``.
    """

    def __init__(self, response: aiohttp.ClientResponse, where: str) -> None:
        self._response = response
        self._where = where
        self._decoder = SSEDecoder()
        self._events: list[bytes] = []
        self._over = False
        self.usage: Usage | None = None

    def __aiter__(self) -> ChunkStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        while not self._events:
            if self._over:
                raise StopAsyncIteration
            try:
                data = await self._response.content.readany()
            except TRANSPORT_ERRORS as exc:
                self._close()
                raise transport_failure(exc, self._where) from exc
            if data:
                events = self._decoder.feed(data)
            else:  # the server ended the stream (without [DONE], or it would be over)
                self._close()
                events = self._decoder.finish()
            self._events = events[::-1]  # popped from the end, so in order
        event = self._events.pop()
        if event == b"[DONE]":
            self._events.clear()
            self._close()
            raise StopAsyncIteration
        chunk = self._read(event)
        if chunk.usage is not None:
            self.usage = chunk.usage
        return chunk

    def _read(self, event: bytes) -> ChatCompletionChunk:
        try:
            return _decode_chunk(event)
        except UNREADABLE_JSON as exc:
            self._close()
            try:
                reported = _decode_stream_error(event).error
            except UNREADABLE_JSON:
                reported = None
            if reported is not None:
                raise LLMTransientError(
                    f"{self._where} reported an error mid-stream: {reported}", body=event
                ) from None
            raise LLMUnusableAnswer(
                f"{self._where} sent a stream event that is not a chat completion chunk "
                f"({why_unreadable(exc)}): {event[:300].decode(errors='replace')}",
                body=event,
            ) from exc

    def _close(self) -> None:
        if not self._over:
            self._over = True
            self._response.release()

    async def aclose(self) -> None:
        if not self._over:
            self._over = True
            # Before the end, this closes the connection rather than pooling it.
            self._response.close()

    async def __aenter__(self) -> ChunkStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
