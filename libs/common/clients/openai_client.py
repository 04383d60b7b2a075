"""The one client PAS asks OpenAI-compatible chat servers with (OpenAI, vLLM, llama.cpp's
server, the PAS LLM services, the provider router).

aiohttp, not httpx, on purpose: its pool keeps up as calls in flight grow, where httpx's slows
down (247 req/s at 64 connections against 1,512 at 1 on the same server, where aiohttp keeps
above 8,000); see docs/benchmarks.md.

Every failure is one of three kinds, each a :class:`PASError` a service may answer with:

- :class:`LLMTransientError` (503): another attempt may work: a timeout
  (:class:`LLMTimeout`, 504), nothing listening (:class:`LLMUnreachable`), a dropped
  connection, a 429 or a 5xx, an error reported inside a stream.
- :class:`LLMRefused` (502): the server refused this request (a 4xx other than 429, or a
  redirect, which is not followed); retrying it unchanged will not help.
- :class:`LLMUnusableAnswer` (502): a 2xx whose body is not a chat completion (not JSON, the
  wrong shape, no choices), or a stream event that is not a chunk.

Status and body of an HTTP failure ride on the error (``status``, ``body``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
import msgspec

from libs.common.errors import PASError
from libs.common.http_tracing import outbound_headers
from libs.common.schemas.llm import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ModelList,
    Usage,
)
from libs.common.schemas.usage import HEADER_USAGE_REPORTED_BY

TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C trace context: passed on to the server as given, never made up here."""

KEEPALIVE_S = 5.0
"""Idle connections are dropped after this (httpx's default, and uvicorn's keep-alive)."""


# --- the error taxonomy ------------------------------------------------------------------------


class LLMError(PASError):
    """An OpenAI-compatible call that did not give a usable answer."""

    status_code = 502

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        """The server's HTTP status, when it answered with one."""
        self.body = body
        """The server's answer body, when it answered with one."""


class LLMTransientError(LLMError):
    """Timeout, no connection, a dropped connection, 429 or 5xx: another attempt may work."""

    status_code = 503


class LLMTimeout(LLMTransientError):
    """The server did not connect, answer, or send the next bytes within the timeout."""

    status_code = 504


class LLMUnreachable(LLMTransientError):
    """Nothing answers at the address (refused connection, unknown host): retrying at once
    rarely helps, so a caller with somewhere else to go goes there."""


class LLMRefused(LLMError):
    """The server refused this request (4xx other than 429, or a redirect)."""


class LLMUnusableAnswer(LLMError):
    """The server said yes (2xx) but what came is not a chat completion or chunk."""


_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)


def transport_failure(exc: BaseException, where: str) -> LLMTransientError:
    """Sort a failure to talk to the server at all into the taxonomy."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors
        return LLMTimeout(f"{where} did not answer in time ({name})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return LLMUnreachable(f"{where} is not reachable: {name}: {exc}")
    # Such as a pooled connection the server closed meanwhile: a fresh one may well work.
    return LLMTransientError(f"{where} broke the connection: {name}: {exc}")


def status_failure(status: int, body: bytes, where: str) -> LLMError:
    """The error for a non-2xx answer."""
    text = body.decode(errors="replace")[:500]
    if status == 429 or status >= 500:
        return LLMTransientError(f"{where} answered {status}: {text}", status=status, body=body)
    return LLMRefused(f"{where} refused the request ({status}): {text}", status=status, body=body)


@functools.lru_cache(maxsize=256)
def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``HTTP_PROXY``,
    ``ALL_PROXY``, in either case, unless ``NO_PROXY`` covers its host), as curl and httpx read
    them; once per URL, not per call. aiohttp's ``trust_env`` looks them up (and ``~/.netrc``)
    on every request, in two hops to a thread: measured on the router, about 0.6 ms of CPU a
    request (docs/benchmarks.md, tracing section). Model APIs authenticate with headers, so
    netrc is not read."""
    parts = urlsplit(url)
    if proxy_bypass(parts.hostname or ""):  # NO_PROXY (the system settings on macOS)
        return None
    proxies = getproxies_environment()
    return proxies.get(parts.scheme) or proxies.get("all")


async def post_for_success(
    session: aiohttp.ClientSession,
    url: str,
    data: bytes,
    headers: Mapping[str, str],
    client_timeout: aiohttp.ClientTimeout,
    *,
    where: str,
    proxy: str | None = None,
) -> aiohttp.ClientResponse:
    """POST (through ``proxy`` if given) and return the 2xx response with its body unread (the
    caller reads and releases it); a transport failure or any other status raises from the
    taxonomy, naming ``where``."""
    try:
        response = await session.post(
            url,
            data=data,
            headers=outbound_headers(url, headers),
            allow_redirects=False,
            timeout=client_timeout,
            proxy=proxy,
        )
        if 200 <= response.status < 300:
            return response
        try:
            error_body = await response.read()
        finally:
            response.release()
    except _TRANSPORT_ERRORS as exc:
        raise transport_failure(exc, where) from exc
    raise status_failure(response.status, error_body, where)


# --- what comes back ---------------------------------------------------------------------------


class _WireMessage(msgspec.Struct):
    content: str | None = None


class _WireChoice(msgspec.Struct):
    message: _WireMessage
    index: int = 0
    finish_reason: str | None = None


class _WireUsage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int | None = None


class _WireCompletion(msgspec.Struct):
    """A chat completion as servers really send it: lenient where they differ (no ``id``,
    null ``content``, no ``usage``); strict where an answer would be meaningless."""

    choices: list[_WireChoice] = msgspec.field(default_factory=list)
    id: str = ""
    created: int = 0
    model: str = ""
    usage: dict[str, Any] | None = None
    system_fingerprint: str | None = None


class _StreamError(msgspec.Struct):
    error: Any = None


_decode_completion = msgspec.json.Decoder(_WireCompletion).decode
_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
_decode_stream_error = msgspec.json.Decoder(_StreamError).decode
_decode_models = msgspec.json.Decoder(ModelList).decode
_encode = msgspec.json.Encoder().encode


class ChatAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A chat completion, parsed, with the usage as the server stated it."""

    completion: ChatCompletion
    """Normalised: null content reads as ``""``, a missing usage as zero tokens."""
    raw_usage: dict[str, Any] | None
    """The ``usage`` object as sent, with what :class:`Usage` leaves out (OpenRouter's
    ``cost``, cached tokens); ``None`` when the server sent none."""

    @property
    def text(self) -> str:
        return self.completion.choices[0].message.content

    @property
    def finish_reason(self) -> str | None:
        return self.completion.choices[0].finish_reason


def read_completion(payload: bytes, where: str = "the server") -> ChatAnswer:
    """``payload`` as a chat completion, or :class:`LLMUnusableAnswer` saying why not."""
    try:
        wire = _decode_completion(payload)
        usage = msgspec.convert(wire.usage or {}, _WireUsage)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise LLMUnusableAnswer(
            f"{where} answered with something that is not a chat completion ({exc}): "
            f"{payload[:300].decode(errors='replace')}",
            body=payload,
        ) from exc
    if not wire.choices:
        raise LLMUnusableAnswer(
            f"{where} answered a chat completion without choices: "
            f"{payload[:300].decode(errors='replace')}",
            body=payload,
        )
    completion = ChatCompletion(
        id=wire.id,
        created=wire.created,
        model=wire.model,
        choices=[
            ChatChoice(
                index=choice.index,
                message=AssistantMessage(content=choice.message.content or ""),
                finish_reason=choice.finish_reason,
            )
            for choice in wire.choices
        ],
        usage=Usage(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=(
                usage.total_tokens
                if usage.total_tokens is not None
                else usage.prompt_tokens + usage.completion_tokens
            ),
        ),
        system_fingerprint=wire.system_fingerprint,
    )
    return ChatAnswer(completion=completion, raw_usage=wire.usage)


def call_headers(
    *,
    request_id: str | None = None,
    usage_reported_by: str | None = None,
    trace: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The per-call headers PAS sends along: ``x-request-id``; ``X-PAS-Usage-Reported-By``
    (who publishes this call's usage, so that a PAS LLM service does not count it again);
    the W3C trace context found in ``trace`` (an incoming request's or record's headers);
    and ``extra`` (such as the workflow attribution headers) as they are."""
    headers = dict(extra) if extra else {}
    if request_id:
        headers["x-request-id"] = request_id
    if usage_reported_by:
        headers[HEADER_USAGE_REPORTED_BY] = usage_reported_by
    if trace:
        for key, value in trace.items():
            if key.lower() in TRACE_HEADERS:
                headers[key.lower()] = value
    return headers


# --- server-sent events ------------------------------------------------------------------------


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
            except _TRANSPORT_ERRORS as exc:
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
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._close()
            try:
                reported = _decode_stream_error(event).error
            except (msgspec.DecodeError, msgspec.ValidationError):
                reported = None
            if reported is not None:
                raise LLMTransientError(
                    f"{self._where} reported an error mid-stream: {reported}", body=event
                ) from None
            raise LLMUnusableAnswer(
                f"{self._where} sent a stream event that is not a chat completion chunk "
                f"({exc}): {event[:300].decode(errors='replace')}",
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


# --- the client --------------------------------------------------------------------------------


class OpenAIClient:
    """Chat completions (plain and streamed) and the model list of one OpenAI-compatible API.

    ``base_url`` is where ``/chat/completions`` begins (``http://host:8000/v1``; see
    :func:`~libs.common.clients.openai_compat.openai_base_url` to accept both forms). The
    aiohttp session is made on first use, inside the event loop that uses it, unless one is
    given (``session``: shared by several clients, such as the router's candidates; then
    closing it is its owner's job).

    ``timeout_s`` bounds the wait for a pooled connection, for the answer and then for every
    gap between its bytes (httpx's read timeout: a long stream that keeps coming is never cut);
    ``connect_timeout_s`` bounds the TCP connect. ``trust_env`` takes the proxy from the
    environment, as httpx does by default (:func:`environment_proxy`, read once).
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        connect_timeout_s: float = 5.0,
        connections: int = 1024,
        trust_env: bool = True,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.where = self.base_url
        self._chat_url = f"{self.base_url}/chat/completions"
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        # No total: a timer per call costs the hot paths, and a non-streamed answer comes in
        # one piece once ready, so the read bound is its bound too.
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=timeout_s,
            sock_connect=min(connect_timeout_s, timeout_s),
            sock_read=timeout_s,
        )
        self._connections = connections
        self._proxy = environment_proxy(self._chat_url) if trust_env else None
        self._session = session
        self._owns_session = session is None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections, keepalive_timeout=KEEPALIVE_S
                ),
                trust_env=False,  # the proxy is looked up once, not on every call
            )
        return self._session

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """POST ``body`` (a dict, or JSON already encoded) to ``/chat/completions`` and return
        the 2xx response with its body unread: the caller reads it and releases it. Anything
        else raises from the taxonomy."""
        data = body if isinstance(body, bytes) else _encode(body)
        sent = {**self._headers, **headers} if headers else self._headers
        return await post_for_success(
            self._http(),
            self._chat_url,
            data,
            sent,
            self._timeout,
            where=self.where,
            proxy=self._proxy,
        )

    async def complete_bytes(
        self, body: Mapping[str, Any] | bytes, *, headers: Mapping[str, str] | None = None
    ) -> bytes:
        """The 2xx answer's body as sent (for a proxy that passes it on unparsed)."""
        response = await self.send(body, headers=headers)
        try:
            return await response.read()
        except _TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self.where) from exc
        finally:
            response.release()

    async def complete(
        self, body: Mapping[str, Any] | bytes, *, headers: Mapping[str, str] | None = None
    ) -> ChatAnswer:
        """One chat completion, parsed."""
        return read_completion(await self.complete_bytes(body, headers=headers), self.where)

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> ChunkStream:
        """Start a streamed chat completion (``stream`` is set in the body). Failures before
        the answer starts raise here; later ones from iterating the returned stream."""
        if body.get("stream") is not True:
            body = {**body, "stream": True}
        return ChunkStream(await self.send(body, headers=headers), self.where)

    async def models(self, *, timeout_s: float | None = None) -> ModelList:
        """``GET /models``: what the server serves (within ``timeout_s``, when given, rather
        than the client's: a health probe wants to know soon)."""
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        try:
            async with self._http().get(
                f"{self.base_url}/models",
                headers=self._headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                status, payload = response.status, await response.read()
        except _TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self.where) from exc
        if not 200 <= status < 300:
            raise status_failure(status, payload, self.where)
        try:
            return _decode_models(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise LLMUnusableAnswer(
                f"{self.where}/models is not a model list ({exc})", body=payload
            ) from exc
