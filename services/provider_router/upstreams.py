"""Calling one candidate: OpenAI-compatible APIs (PAS LLM services, vLLM, OpenAI) as they are,
Anthropic's Messages API translated to and from OpenAI's chat format."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import httpx
import msgspec

from libs.common.errors import PASError
from libs.common.schemas.llm import Usage
from libs.common.schemas.usage import HEADER_USAGE_REPORTED_BY
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
    usage: Usage | None = None


_decode_usage = msgspec.json.Decoder(_UsageOnly).decode


def usage_in(payload: bytes) -> Usage | None:
    try:
        return _decode_usage(payload).usage
    except msgspec.DecodeError:
        return None


def _url(candidate: Candidate) -> str:
    if candidate.kind == "local":
        return f"{candidate.endpoint}/v1/chat/completions"
    if candidate.kind == "anthropic":
        return f"{candidate.endpoint}/v1/messages"
    return f"{candidate.endpoint}/chat/completions"


def _headers(
    candidate: Candidate, request_id: str | None, usage_reporter: str | None = None
) -> dict[str, str]:
    headers = {"content-type": "application/json"}
    if request_id:
        headers["x-request-id"] = request_id
    if usage_reporter and candidate.kind == "local":
        # The router publishes this call's usage; the PAS LLM service must not count it again.
        headers[HEADER_USAGE_REPORTED_BY] = usage_reporter
    if candidate.api_key and candidate.kind == "anthropic":
        headers["x-api-key"] = candidate.api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
    elif candidate.api_key:
        headers["authorization"] = f"Bearer {candidate.api_key}"
    return headers


def to_anthropic(body: dict[str, Any]) -> dict[str, Any]:
    system = "\n".join(
        _text(m.get("content"))
        for m in body["messages"]
        if m.get("role") in ("system", "developer")
    )
    request: dict[str, Any] = {
        "model": body["model"],
        "max_tokens": body.get("max_completion_tokens")
        or body.get("max_tokens")
        or ANTHROPIC_DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": m["role"], "content": _text(m.get("content"))}
            for m in body["messages"]
            if m.get("role") in ("user", "assistant")
        ],
        "stream": bool(body.get("stream")),
    }
    if system:
        request["system"] = system
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(ours) is not None:
            request[theirs] = body[ours]
    stop = body.get("stop")
    if stop:
        request["stop_sequences"] = [stop] if isinstance(stop, str) else stop
    return request


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def from_anthropic(payload: bytes) -> bytes:
    message = msgspec.json.decode(payload)
    text = "".join(b.get("text", "") for b in message.get("content", []) if b.get("type") == "text")
    usage = message.get("usage", {})
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
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
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
    )


class Upstreams:
    def __init__(self, http: httpx.AsyncClient, *, usage_reporter: str | None = None) -> None:
        self._http = http
        self._usage_reporter = usage_reporter

    async def _send(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None, *, stream: bool
    ) -> httpx.Response:
        payload = to_anthropic(body) if candidate.kind == "anthropic" else body
        request = self._http.build_request(
            "POST",
            _url(candidate),
            content=msgspec.json.encode(payload),
            headers=_headers(candidate, request_id, self._usage_reporter),
        )
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise UpstreamFailed(f"timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.ConnectError as exc:
            # Nothing listens there: trying again at once will not help; fall back.
            raise UpstreamFailed(f"ConnectError: {exc}", retryable=False) from exc
        except httpx.HTTPError as exc:
            # A pooled connection the server closed meanwhile: a fresh one may well work.
            raise UpstreamFailed(f"{type(exc).__name__}: {exc}", retryable=True) from exc
        if response.is_success:
            return response
        error_body = await response.aread()
        await response.aclose()
        if response.status_code == 429 or response.status_code >= 500:
            raise UpstreamFailed(
                f"answered {response.status_code}: {error_body.decode(errors='replace')[:300]}",
                retryable=True,
            )
        raise UpstreamRefused(candidate.id, response.status_code, error_body)

    async def complete(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> bytes:
        response = await self._send(candidate, body, request_id, stream=False)
        try:
            payload = response.content
        except httpx.HTTPError as exc:
            raise UpstreamFailed(f"broke off: {exc}", retryable=True) from exc
        return from_anthropic(payload) if candidate.kind == "anthropic" else payload

    async def open_stream(
        self, candidate: Candidate, body: dict[str, Any], request_id: str | None
    ) -> AsyncGenerator[bytes, None]:
        """The answer's SSE bytes in OpenAI's format; failures before the first byte raise."""
        response = await self._send(candidate, body, request_id, stream=True)
        chunks = (
            _anthropic_to_openai_sse(response)
            if candidate.kind == "anthropic"
            else response.aiter_raw()
        )
        try:
            first = await anext(chunks)
        except StopAsyncIteration:
            await response.aclose()
            raise UpstreamFailed("ended the stream before any data", retryable=True) from None
        except httpx.HTTPError as exc:
            await response.aclose()
            raise UpstreamFailed(f"broke off before any data: {exc}", retryable=True) from exc

        async def rest() -> AsyncGenerator[bytes, None]:
            try:
                yield first
                async for chunk in chunks:
                    yield chunk
            finally:
                await response.aclose()

        return rest()


async def _anthropic_to_openai_sse(response: httpx.Response) -> AsyncIterator[bytes]:
    """Anthropic's stream events (message_start, content_block_delta, message_delta, ...)
    as OpenAI chat-completion chunks."""
    chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model = ""
    prompt_tokens = 0

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

    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        event = msgspec.json.decode(line[5:].strip())
        kind = event.get("type")
        if kind == "message_start":
            model = event["message"].get("model", "")
            prompt_tokens = event["message"].get("usage", {}).get("input_tokens", 0)
            yield chunk({"role": "assistant", "content": ""})
        elif kind == "content_block_delta" and event["delta"].get("type") == "text_delta":
            yield chunk({"content": event["delta"]["text"]})
        elif kind == "message_delta":
            completion = event.get("usage", {}).get("output_tokens", 0)
            finish = _STOP_REASONS.get(event["delta"].get("stop_reason"), "stop")
            yield chunk({}, finish)
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": prompt_tokens + completion,
            }
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
            raise httpx.HTTPError(f"anthropic stream error: {event.get('error')}")
