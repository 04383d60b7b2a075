"""Calling one candidate: OpenAI-compatible APIs (PAS LLM services, vLLM, OpenAI) as they are,
through the shared client (``libs/common/clients/openai_client.py``), their bytes passed on
unparsed; Anthropic's Messages API translated to and from OpenAI's chat format
(``anthropic_messages.py``), on the same session and with the same error taxonomy.

aiohttp, not httpx, on purpose: this is the router's hot path, and httpx's pool slows down as
connections grow (247 req/s at 64 against 1,512 at 1 on the same server, where aiohttp keeps
above 8,000); see docs/benchmarks.md.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import msgspec

from libs.common.clients.chat_completions import WireUsage
from libs.common.clients.llm_errors import (
    TRANSPORT_ERRORS,
    LLMError,
    LLMRefused,
    LLMTimeout,
    LLMUnreachable,
    transport_failure,
)
from libs.common.clients.openai_client import (
    OpenAIClient,
    call_headers,
    environment_proxy,
    post_for_success,
)
from libs.common.schemas.llm import Usage
from libs.common.unreadable_json import UNREADABLE_JSON
from services.provider_router.anthropic_answers import anthropic_to_openai_sse, from_anthropic
from services.provider_router.anthropic_messages import (
    answers_through_tool,
    anthropic_headers,
    to_anthropic,
    unservable,
)
from services.provider_router.candidates import Candidate
from services.provider_router.upstream_errors import (
    CALLERS_FAULT_STATUSES,
    UpstreamFailed,
    UpstreamMisconfigured,
    UpstreamRefused,
)


def without_cache_marks(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without Anthropic's ``cache_control`` marks on content parts, for an
    OpenAI-compatible server: its prompt cache needs none, and a strict one (OpenAI) refuses a
    field it does not know, which would keep a request marked for Anthropic from falling back
    there. The same object when nothing is marked (the common case: no copy)."""
    messages = body.get("messages") or []
    marked = any(
        isinstance(m.get("content"), list)
        and any(isinstance(p, dict) and "cache_control" in p for p in m["content"])
        for m in messages
    )
    if not marked:
        return body
    unmarked = [
        {
            **m,
            "content": [
                {k: v for k, v in p.items() if k != "cache_control"} if isinstance(p, dict) else p
                for p in m["content"]
            ],
        }
        if isinstance(m.get("content"), list)
        else m
        for m in messages
    ]
    return {**body, "messages": unmarked}


class _UsageOnly(msgspec.Struct):
    usage: WireUsage | None = None


_decode_usage = msgspec.json.Decoder(_UsageOnly).decode


def usage_in(payload: bytes) -> Usage | None:
    """The tokens an answer (a chat completion, a chunk, embeddings) says it used; None when
    it says none or cannot be read (nested too deep too: the answer is passed on as it came)."""
    try:
        tokens = _decode_usage(payload).usage
    except UNREADABLE_JSON:
        return None
    return None if tokens is None else tokens.as_usage()


def _upstream_failure(exc: LLMError, candidate: Candidate) -> Exception:
    """The shared taxonomy as the dispatcher sorts it: refused (the caller's problem, answered
    with the same status), misconfigured (the candidate's entry's problem: fall back, and count
    it against its circuit), or failed (worth retrying at this candidate, or not)."""
    cause = exc.__cause__
    body = exc.body.decode(errors="replace")[:300]
    if isinstance(exc, LLMRefused):
        if exc.status in CALLERS_FAULT_STATUSES:
            return UpstreamRefused(candidate.id, exc.status, exc.body)
        # Passed on, a revoked key's 401 would read as the router refusing the caller.
        return UpstreamMisconfigured(f"answered {exc.status}: {body}")
    if exc.status is not None:
        return UpstreamFailed(
            f"answered {exc.status}: {body}", retryable=True, retry_after_s=exc.retry_after_s
        )
    if isinstance(exc, LLMTimeout):
        return UpstreamFailed(f"timed out ({type(cause).__name__})", retryable=True)
    if isinstance(exc, LLMUnreachable):
        # Nothing listens there: trying again at once will not help; fall back.
        return UpstreamFailed(f"ConnectError: {cause}", retryable=False)
    # Such as a pooled connection the server closed meanwhile: a fresh one may well work.
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return UpstreamFailed(detail, retryable=True)


MAX_CONNECTIONS = 1024


def upstream_session() -> aiohttp.ClientSession:
    """The one HTTP session for every candidate; open it inside the app's event loop.

    Each call brings its own bounds (see :class:`Upstreams`); idle connections are dropped
    after 5 s; each candidate's proxy comes from the environment, looked up once
    (:func:`~libs.common.clients.openai_client.environment_proxy`).
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=5.0),
        trust_env=False,
    )


class Upstreams:
    """Calls to candidates, all on one session. ``read_timeout_s`` bounds the wait for a free
    pooled connection, for the answer and then for each gap between its bytes (a long stream
    that keeps coming is never cut); ``connect_timeout_s`` bounds the TCP connect."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        *,
        read_timeout_s: float,
        connect_timeout_s: float,
        usage_reporter: str | None = None,
    ) -> None:
        self._http = http
        self._read_timeout_s = read_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._usage_reporter = usage_reporter
        self._clients: dict[str, tuple[Candidate, OpenAIClient]] = {}
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=read_timeout_s,
            sock_connect=min(connect_timeout_s, read_timeout_s),
            sock_read=read_timeout_s,
        )

    def _client(self, candidate: Candidate) -> OpenAIClient:
        """The candidate's client, on the shared session (remade if its address or key
        changed)."""
        known = self._clients.get(candidate.id)
        if known is not None and (
            known[0] is candidate
            or (known[0].endpoint, known[0].api_key) == (candidate.endpoint, candidate.api_key)
        ):
            return known[1]
        base = f"{candidate.endpoint}/v1" if candidate.kind == "local" else candidate.endpoint
        client = OpenAIClient(
            base,
            api_key=candidate.api_key,
            timeout_s=self._read_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            session=self._http,
        )
        self._clients[candidate.id] = (candidate, client)
        return client

    @staticmethod
    def why_cannot_serve(candidate: Candidate, body: dict[str, Any], operation: str) -> str | None:
        """Why the candidate's API cannot do what ``body`` asks (so it is not sent there, and
        another candidate may serve it), or None. Asked before a call (the dispatcher asks
        before it admits one): the calls below take a request this passed."""
        if candidate.kind != "anthropic":
            return None
        if operation == "embeddings":
            return "Anthropic has no embeddings API"
        return unservable(body)

    def _call_headers(self, candidate: Candidate, request_id: str | None) -> dict[str, str]:
        return call_headers(
            request_id=request_id,
            # The router publishes this call's usage; the PAS LLM service must not count it
            # again.
            usage_reported_by=self._usage_reporter if candidate.kind == "local" else None,
        )

    async def _send(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> aiohttp.ClientResponse:
        """The candidate's 2xx response, its body still to read (release it when done)."""
        try:
            if candidate.kind == "anthropic":
                return await self._send_anthropic(candidate, body, request_id)
            headers = self._call_headers(candidate, request_id)
            return await self._client(candidate).send(without_cache_marks(body), headers=headers)
        except LLMError as exc:
            raise _upstream_failure(exc, candidate) from exc

    async def _send_anthropic(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> aiohttp.ClientResponse:
        where = f"{candidate.endpoint}/v1/messages"
        return await post_for_success(
            self._http,
            where,
            msgspec.json.encode(to_anthropic(body, cache_prompts=candidate.cache_prompts)),
            anthropic_headers(candidate.api_key, request_id),
            self._timeout,
            where=where,
            proxy=environment_proxy(where),
        )

    async def embed(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> bytes:
        """The candidate's embeddings of ``body``'s input, OpenAI's shape, as sent."""
        headers = self._call_headers(candidate, request_id)
        try:
            return await self._client(candidate).embed_bytes(body, headers=headers)
        except LLMError as exc:
            raise _upstream_failure(exc, candidate) from exc

    async def complete(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> bytes:
        response = await self._send(candidate, body, request_id)
        try:
            payload = await response.read()
        except TRANSPORT_ERRORS as exc:
            raise _upstream_failure(transport_failure(exc, candidate.endpoint), candidate) from exc
        finally:
            response.release()
        if candidate.kind == "anthropic":
            return from_anthropic(payload, json_answer=answers_through_tool(body))
        return payload

    async def open_stream(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> AsyncGenerator[bytes, None]:
        """The answer's SSE bytes in OpenAI's format; failures before the first byte raise."""
        response = await self._send(candidate, body, request_id)
        chunks: AsyncIterator[bytes] = (
            anthropic_to_openai_sse(response.content, json_answer=answers_through_tool(body))
            if candidate.kind == "anthropic"
            else response.content.iter_any()
        )
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            response.release()
            raise UpstreamFailed("ended the stream before any data", retryable=True) from None
        except UpstreamFailed:
            # Already sorted by the translation (an answer that is no event stream is not
            # worth asking again; an error event may pass): passed on as it says.
            response.release()
            raise
        except TRANSPORT_ERRORS as exc:
            response.release()
            raise UpstreamFailed(f"broke off before any data: {exc}", retryable=True) from exc

        async def rest() -> AsyncGenerator[bytes, None]:
            try:
                yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                # Before the end, this closes the connection rather than pooling it.
                response.release()

        return rest()
