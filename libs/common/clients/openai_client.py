"""The one client PAS asks OpenAI-compatible chat servers with (OpenAI, vLLM, llama.cpp's
server, the PAS LLM services, the provider router).

aiohttp, not httpx, on purpose: its pool keeps up as calls in flight grow, where httpx's slows
down (247 req/s at 64 connections against 1,512 at 1 on the same server, where aiohttp keeps
above 8,000); see docs/benchmarks.md.

Failures are :mod:`libs.common.clients.llm_errors`' taxonomy (transient, refused, unusable
answer); answers are read by ``chat_completions.py``, streams by ``chat_stream.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies_environment, proxy_bypass

import aiohttp
import msgspec

from libs.common.clients.chat_completions import ChatAnswer, read_completion
from libs.common.clients.chat_stream import ChunkStream
from libs.common.clients.llm_errors import (
    TRANSPORT_ERRORS,
    LLMUnusableAnswer,
    retry_after_seconds,
    status_failure,
    transport_failure,
)
from libs.common.http_tracing import outbound_headers
from libs.common.schemas.embeddings import EmbeddingList
from libs.common.schemas.llm import ModelList
from libs.common.schemas.usage import HEADER_USAGE_REPORTED_BY
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable

TRACE_HEADERS = ("traceparent", "tracestate")
"""W3C trace context: passed on to the server as given, never made up here."""

KEEPALIVE_S = 5.0
"""Idle connections are dropped after this (httpx's default, and uvicorn's keep-alive)."""

_decode_models = msgspec.json.Decoder(ModelList).decode
_decode_embeddings = msgspec.json.Decoder(EmbeddingList).decode
_encode = msgspec.json.Encoder().encode


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
    except TRANSPORT_ERRORS as exc:
        raise transport_failure(exc, where) from exc
    raise status_failure(
        response.status, error_body, where, retry_after_s=retry_after_seconds(response.headers)
    )


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
        self._embeddings_url = f"{self.base_url}/embeddings"
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
        timeout_s: float | None = None,
    ) -> aiohttp.ClientResponse:
        """POST ``body`` (a dict, or JSON already encoded) to ``/chat/completions`` and return
        the 2xx response with its body unread: the caller reads it and releases it. Anything
        else raises from the taxonomy. ``timeout_s`` bounds this call whole, its body read
        included, instead of the client's bounds (:class:`LLMTimeout` past it)."""
        return await self._post(self._chat_url, body, headers, timeout_s)

    async def complete_bytes(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        """The 2xx answer's body as sent (for a proxy that passes it on unparsed)."""
        return await self._read(await self.send(body, headers=headers, timeout_s=timeout_s))

    async def complete(
        self,
        body: Mapping[str, Any] | bytes,
        *,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> ChatAnswer:
        """One chat completion, parsed (within ``timeout_s``, when given, as :meth:`send`)."""
        payload = await self.complete_bytes(body, headers=headers, timeout_s=timeout_s)
        return read_completion(payload, self.where)

    async def stream(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> ChunkStream:
        """Start a streamed chat completion (``stream`` is set in the body). Failures before
        the answer starts raise here; later ones from iterating the returned stream."""
        if body.get("stream") is not True:
            body = {**body, "stream": True}
        return ChunkStream(await self.send(body, headers=headers), self.where)

    async def embed(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> EmbeddingList:
        """``POST /embeddings``, the vectors parsed (ask for floats: the default)."""
        payload = await self.embed_bytes(body, headers=headers)
        try:
            return _decode_embeddings(payload)
        except UNREADABLE_JSON as exc:
            raise LLMUnusableAnswer(
                f"{self.where} answered embeddings in an unknown shape: {why_unreadable(exc)}",
                body=payload,
            ) from exc

    async def embed_bytes(
        self, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> bytes:
        """``POST /embeddings``: the 2xx answer's body as sent (for a proxy)."""
        return await self._read(await self._post(self._embeddings_url, body, headers))

    async def _post(
        self,
        url: str,
        body: Mapping[str, Any] | bytes,
        headers: Mapping[str, str] | None,
        timeout_s: float | None = None,
    ) -> aiohttp.ClientResponse:
        data = body if isinstance(body, bytes) else _encode(body)
        sent = {**self._headers, **headers} if headers else self._headers
        # aiohttp's total runs until the response is released: the body's read included.
        timeout = self._timeout if timeout_s is None else aiohttp.ClientTimeout(total=timeout_s)
        return await post_for_success(
            self._http(), url, data, sent, timeout, where=self.where, proxy=self._proxy
        )

    async def _read(self, response: aiohttp.ClientResponse) -> bytes:
        """A 2xx response's whole body; the response is released."""
        try:
            return await response.read()
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self.where) from exc
        finally:
            response.release()

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
                wait = retry_after_seconds(response.headers)
        except TRANSPORT_ERRORS as exc:
            raise transport_failure(exc, self.where) from exc
        if not 200 <= status < 300:
            raise status_failure(status, payload, self.where, retry_after_s=wait)
        try:
            return _decode_models(payload)
        except UNREADABLE_JSON as exc:
            raise LLMUnusableAnswer(
                f"{self.where}/models is not a model list ({why_unreadable(exc)})", body=payload
            ) from exc
