"""Anthropic's Messages API answers as OpenAI's: a message as a chat completion, stream events
as chat-completion chunks (text, and tool calls with their arguments piece by piece, as OpenAI
streams them), usage as OpenAI counts it. An answer asked in JSON comes as the forced tool's
call (``anthropic_messages.JSON_ANSWER_TOOL``), whose input is given back as the answer's text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import msgspec

from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable
from services.provider_router.upstream_errors import UpstreamFailed

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def usage_from_anthropic(prompt: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
    """Anthropic's usage as OpenAI counts it. Anthropic's ``input_tokens`` leaves out the
    tokens read from its prompt cache and those written to it, which it counts (and bills)
    apart; OpenAI's ``prompt_tokens`` holds them all, the cached ones also in
    ``prompt_tokens_details.cached_tokens``, the written ones in
    ``cache_creation_input_tokens`` (as LiteLLM passes them on)."""
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


def from_anthropic(payload: bytes, *, json_answer: bool = False) -> bytes:
    """A Messages API answer as an OpenAI chat completion, tool calls included; with
    ``json_answer``, the forced tool's input is the answer's text. A body that is no message
    (a proxy's page answered 200, say) is a failure of the candidate's, not a crash."""
    message = _decoded(payload)
    blocks = message.get("content", [])
    if message.get("type") != "message" or not (
        isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks)
    ):
        raise _unusable("an answer that is not an Anthropic message", payload)
    stop_reason: str | None = message.get("stop_reason")
    if json_answer:
        inputs = [b.get("input", {}) for b in blocks if b.get("type") == "tool_use"]
        blocks = [{"type": "text", "text": msgspec.json.encode(i).decode()} for i in inputs[:1]]
        stop_reason = _json_answer_stop(stop_reason)
    text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
    calls = [
        {
            "id": b.get("id", ""),
            "type": "function",
            "function": {
                "name": b.get("name", ""),
                "arguments": msgspec.json.encode(b.get("input", {})).decode(),
            },
        }
        for b in blocks
        if b.get("type") == "tool_use"
    ]
    reply: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if calls:
        reply["tool_calls"] = calls
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
                    "message": reply,
                    "finish_reason": _STOP_REASONS.get(stop_reason or "", "stop"),
                }
            ],
            "usage": usage_from_anthropic(usage, usage.get("output_tokens", 0)),
        }
    )


def _decoded(payload: bytes) -> dict[str, Any]:
    """A JSON object the candidate sent (a message, a stream event), or its failure."""
    try:
        decoded = msgspec.json.decode(payload)
    except UNREADABLE_JSON as exc:
        raise _unusable(f"something that is not JSON ({why_unreadable(exc)})", payload) from None
    if not isinstance(decoded, dict):
        raise _unusable("JSON that is no object", payload)
    return decoded


def _unusable(what: str, payload: bytes) -> UpstreamFailed:
    """The failure of a 2xx answer the router cannot use: asked again, the same candidate
    would likely send the same, so the next one is asked."""
    sent = payload[:200].decode(errors="replace")
    return UpstreamFailed(f"answered 2xx with {what}: {sent}", retryable=False)


def _json_answer_stop(stop_reason: str | None) -> str | None:
    """The forced tool's call is the answer's end, not a call for the caller to make."""
    return "end_turn" if stop_reason == "tool_use" else stop_reason


_SSE_LINES = (b"data:", b"event:", b"id:", b"retry:", b":")
"""How each non-blank line of an event stream begins (its fields, or ``:`` for a comment)."""


async def anthropic_to_openai_sse(
    lines: AsyncIterable[bytes], *, json_answer: bool = False
) -> AsyncIterator[bytes]:
    """Anthropic's stream events as OpenAI chat-completion chunks (see :class:`_Chunks`). A
    body that is no event stream (a proxy's page answered 200, say) is a failure of the
    candidate's, as :func:`from_anthropic` has it for a body that is no message."""
    chunks = _Chunks(json_answer=json_answer)
    async for line in lines:
        if line.startswith(b"data:"):
            for chunk in chunks.of(_decoded(line[5:].strip())):
                yield chunk
        elif line.strip() and not line.startswith(_SSE_LINES):
            raise _unusable("an answer that is not an Anthropic event stream", line)


class _Chunks:
    """One stream's events (message_start, content_block_start and _delta, message_delta,
    ...) as OpenAI's chunks: text as content deltas, a tool call as its id and name first,
    then its arguments piece by piece, as OpenAI streams them; with ``json_answer``, the
    forced tool's input as the content, piece by piece."""

    def __init__(self, *, json_answer: bool) -> None:
        self._json_answer = json_answer
        self._id = f"chatcmpl-{uuid.uuid4().hex}"
        self._created = int(time.time())
        self._model = ""
        self._prompt: dict[str, Any] = {}
        # A content block's index -> its tool call's index among the answer's tool calls.
        self._tool_calls: dict[int, int] = {}

    def of(self, event: dict[str, Any]) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            self._model = event["message"].get("model", "")
            self._prompt = event["message"].get("usage", {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            stop_reason = event["delta"].get("stop_reason")
            if self._json_answer:
                stop_reason = _json_answer_stop(stop_reason)
            completion = event.get("usage", {}).get("output_tokens", 0)
            return [
                self._chunk({}, _STOP_REASONS.get(stop_reason, "stop")),
                self._chunk(None, usage=usage_from_anthropic(self._prompt, completion)),
            ]
        if kind == "message_stop":
            return [b"data: [DONE]\n\n"]
        if kind == "error":
            raise UpstreamFailed(f"anthropic stream error: {event.get('error')}", retryable=True)
        return []

    def _block_start(self, event: dict[str, Any]) -> list[bytes]:
        block = event["content_block"]
        if block.get("type") != "tool_use" or self._json_answer:
            return []
        self._tool_calls[event["index"]] = len(self._tool_calls)
        call = {
            "index": self._tool_calls[event["index"]],
            "id": block.get("id", ""),
            "type": "function",
            "function": {"name": block.get("name", ""), "arguments": ""},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _block_delta(self, event: dict[str, Any]) -> list[bytes]:
        delta = event["delta"]
        if delta.get("type") == "text_delta" and not self._json_answer:
            return [self._chunk({"content": delta["text"]})]
        if delta.get("type") != "input_json_delta":
            return []
        piece = delta.get("partial_json", "")
        if self._json_answer:
            return [self._chunk({"content": piece})]
        if event["index"] not in self._tool_calls:
            return []
        call = {"index": self._tool_calls[event["index"]], "function": {"arguments": piece}}
        return [self._chunk({"tool_calls": [call]})]

    def _chunk(
        self, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any
    ) -> bytes:
        body = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + msgspec.json.encode(body) + b"\n\n"
