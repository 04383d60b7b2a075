"""Calling one candidate: OpenAI-compatible APIs (PAS LLM services, vLLM, OpenAI) as they are,
through the shared client (``libs/common/clients/openai_client.py``), their bytes passed on
unparsed; Anthropic's Messages API translated to and from OpenAI's chat format, on the same
session and with the same error taxonomy.

aiohttp, not httpx, on purpose: this is the router's hot path, and httpx's pool slows down as
connections grow (247 req/s at 64 against 1,512 at 1 on the same server, where aiohttp keeps
above 8,000); see docs/benchmarks.md.
"""

from __future__ import annotations

import time
import uuid
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
from libs.common.errors import PASError
from libs.common.schemas.llm import Usage
from services.provider_router.candidates import Candidate

ANTHROPIC_VERSION = "2023-06-01"
ANTHROPIC_DEFAULT_MAX_TOKENS = 1024
_STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class UpstreamFailed(Exception):
    """The candidate did not answer usably; ``retryable`` if the same call may work later."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.retryable = retryable


class UpstreamRefused(PASError):
    """The candidate refused the request itself (a 4xx other than 429): the caller's problem,
    so it is answered with the same status and no fallback."""

    def __init__(self, candidate: str, status_code: int, body: bytes) -> None:
        super().__init__(f"{candidate} refused the request: {body.decode(errors='replace')[:500]}")
        self.status_code = status_code


class _UsageOnly(msgspec.Struct):
    usage: WireUsage | None = None


_decode_usage = msgspec.json.Decoder(_UsageOnly).decode


def usage_in(payload: bytes) -> Usage | None:
    """The tokens an answer (a chat completion, a chunk, embeddings) says it used."""
    try:
        tokens = _decode_usage(payload).usage
    except msgspec.DecodeError:
        return None
    return None if tokens is None else tokens.as_usage()


def _anthropic_headers(candidate: Candidate, request_id: str | None) -> dict[str, str]:
    headers = {"content-type": "application/json", "anthropic-version": ANTHROPIC_VERSION}
    if request_id:
        headers["x-request-id"] = request_id
    if candidate.api_key:
        headers["x-api-key"] = candidate.api_key
    return headers


def _upstream_failure(exc: LLMError, candidate: Candidate) -> Exception:
    """The shared taxonomy as the dispatcher sorts it: refused (the caller's problem, answered
    with the same status), or failed (worth retrying at this candidate, or not)."""
    cause = exc.__cause__
    if isinstance(exc, LLMRefused):
        return UpstreamRefused(candidate.id, exc.status or 502, exc.body)
    if exc.status is not None:
        body = exc.body.decode(errors="replace")[:300]
        return UpstreamFailed(f"answered {exc.status}: {body}", retryable=True)
    if isinstance(exc, LLMTimeout):
        return UpstreamFailed(f"timed out ({type(cause).__name__})", retryable=True)
    if isinstance(exc, LLMUnreachable):
        # Nothing listens there: trying again at once will not help; fall back.
        return UpstreamFailed(f"ConnectError: {cause}", retryable=False)
    # Such as a pooled connection the server closed meanwhile: a fresh one may well work.
    detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
    return UpstreamFailed(detail, retryable=True)


def to_anthropic(body: dict[str, Any], *, cache_prompts: bool = False) -> dict[str, Any]:
    """OpenAI's chat request as a Messages API request. The caller's ``cache_control`` marks
    on content parts (as LiteLLM and OpenRouter pass them) are kept; with ``cache_prompts``
    and no mark of the caller's, the system prompt's end and the conversation's end are
    marked, so that the next request with the same start reads it from Anthropic's cache."""
    system_messages = [m for m in body["messages"] if m.get("role") in ("system", "developer")]
    system = [block for m in system_messages for block in _text_blocks(m.get("content"))]
    turn_messages = [m for m in body["messages"] if m.get("role") in ("user", "assistant")]
    turns = [{"role": m["role"], "content": _text_blocks(m.get("content"))} for m in turn_messages]
    marked = any("cache_control" in b for b in system) or any(
        "cache_control" in b for turn in turns for b in turn["content"]
    )
    if cache_prompts and not marked:
        for blocks in (system, turns[-1]["content"] if turns else []):
            if blocks:
                blocks[-1] = {**blocks[-1], "cache_control": {"type": "ephemeral"}}
        marked = True
    request: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or ANTHROPIC_DEFAULT_MAX_TOKENS,
        # Plain strings unless a block carries a mark (a string cannot).
        "messages": turns
        if marked
        else [{"role": m["role"], "content": _text(m.get("content"))} for m in turn_messages],
        "stream": bool(body.get("stream")),
    }
    if system:
        request["system"] = (
            system if marked else "\n".join(_text(m.get("content")) for m in system_messages)
        )
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(ours) is not None:
            request[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    return request


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    """A message's text as Anthropic's text blocks, with the caller's ``cache_control``; no
    empty block (Anthropic refuses them)."""
    if not isinstance(content, list):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for part in content:
        if isinstance(part, dict) and part.get("text"):
            block = {"type": "text", "text": part["text"]}
            if part.get("cache_control"):
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
    return blocks


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def usage_from_anthropic(prompt: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    """Anthropic's usage as OpenAI counts it. Anthropic's ``input_tokens`` leaves out the
    tokens read from its prompt cache and those written to it, which it counts (and bills)
    apart; OpenAI's ``prompt_tokens`` holds them all, the cached ones also in
    ``prompt_tokens_details.cached_tokens``."""
    cached = prompt.get("cache_read_input_tokens")
    written = prompt.get("cache_creation_input_tokens") or 0
    prompt_tokens = (prompt.get("input_tokens") or 0) + (cached or 0) + written
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if "cache_creation_input_tokens" in prompt:
        usage["cache_creation_input_tokens"] = written
    return usage


def from_anthropic(payload: bytes) -> bytes:
    message = msgspec.json.decode(payload)
    text = "".join(b.get("text", "") for b in message.get("content", []) if b.get("type") == "text")
    usage = message.get("usage", {})
    return msgspec.json.encode(
        {
            "id": message.get("id", f"chatcmpl-{uuid.uuid4().hex}"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": message.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": _STOP_REASONS.get(message.get("stop_reason"), "stop"),
                }
            ],
            "usage": usage_from_anthropic(usage, usage.get("output_tokens", 0)),
        }
    )


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
            return await self._client(candidate).send(body, headers=headers)
        except LLMError as exc:
            raise _upstream_failure(exc, candidate) from exc

    async def _send_anthropic(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> aiohttp.ClientResponse:
        if body.get("n", 1) > 1:  # not an error of the request: another candidate may serve it
            raise UpstreamFailed(
                "Anthropic makes one answer a request; n asks for more", retryable=False
            )
        where = f"{candidate.endpoint}/v1/messages"
        return await post_for_success(
            self._http,
            where,
            msgspec.json.encode(to_anthropic(body, cache_prompts=candidate.cache_prompts)),
            _anthropic_headers(candidate, request_id),
            self._timeout,
            where=where,
            proxy=environment_proxy(where),
        )

    async def embed(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> bytes:
        """The candidate's embeddings of ``body``'s input, OpenAI's shape, as sent."""
        if candidate.kind == "anthropic":  # another candidate may serve it
            raise UpstreamFailed("Anthropic has no embeddings API", retryable=False)
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
        return from_anthropic(payload) if candidate.kind == "anthropic" else payload

    async def open_stream(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> AsyncGenerator[bytes, None]:
        """The answer's SSE bytes in OpenAI's format; failures before the first byte raise."""
        response = await self._send(candidate, body, request_id)
        chunks: AsyncIterator[bytes] = (
            _anthropic_to_openai_sse(response.content)
            if candidate.kind == "anthropic"
            else response.content.iter_any()
        )
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            response.release()
            raise UpstreamFailed("ended the stream before any data", retryable=True) from None
        except (*TRANSPORT_ERRORS, UpstreamFailed) as exc:
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


async def _anthropic_to_openai_sse(lines: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Anthropic's stream events (message_start, content_block_delta, message_delta, ...)
    as OpenAI chat-completion chunks."""
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = ""
    prompt: dict[str, Any] = {}

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        body = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    async for line in lines:
        if not line.startswith(b"data:"):
            continue
        event = msgspec.json.decode(line[5:].strip())
        kind = event.get("type")
        if kind == "message_start":
            model = event["message"].get("model", "")
            prompt = event["message"].get("usage", {})
            yield chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_delta" and event["delta"].get("type") == "text_delta":
            yield chunk({"content": event["delta"]["text"]})
        elif kind == "message_delta":
            completion = event.get("usage", {}).get("output_tokens", 0)
            finish = _STOP_REASONS.get(event["delta"].get("stop_reason"), "stop")
            yield chunk({}, finish)
            usage = usage_from_anthropic(prompt, completion)
            yield (
                b"data: "
                + msgspec.json.encode(
                    {
                        "id": chunk_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
                + b"\n\n"
            )
        elif kind == "message_stop":
            yield b"data: [DONE]\n\n"
        elif kind == "error":
            raise UpstreamFailed(f"anthropic stream error: {event.get('error')}", retryable=True)
