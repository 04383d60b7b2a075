"""A chat completion as OpenAI-compatible servers really send it, read into PAS's types."""

from __future__ import annotations

from typing import Any

import msgspec

from libs.common.clients.llm_errors import LLMUnusableAnswer
from libs.common.schemas.llm import (
    AssistantMessage,
    ChatChoice,
    ChatCompletion,
    ChoiceLogprobs,
    PromptTokensDetails,
    ToolCall,
    Usage,
)
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable


class _WireMessage(msgspec.Struct):
    content: str | None = None
    tool_calls: Any = None
    """Read by :func:`_tool_calls`: calls in a shape of their own are left out, not fatal."""


class _WireChoice(msgspec.Struct):
    message: _WireMessage
    index: int = 0
    finish_reason: str | None = None
    logprobs: Any = None
    """Read by :func:`_logprobs`: a shape of its own is no reason to lose the answer."""


class WireUsage(msgspec.Struct):
    """A ``usage`` object as servers send it (a chat completion's, a stream's last chunk's,
    embeddings', which have no completion tokens), lenient where they differ: a count may be
    null (a proxy writing the OpenAI SDK's objects writes every unset field so), and the
    details hold what each server adds. Bookkeeping is no reason to lose an answer."""

    prompt_tokens: int | None = 0
    completion_tokens: int | None = 0
    total_tokens: int | None = None
    prompt_tokens_details: dict[str, Any] | None = None
    cache_creation_input_tokens: int | None = None

    def as_usage(self) -> Usage:
        prompt, completion = self.prompt_tokens or 0, self.completion_tokens or 0
        details = self.prompt_tokens_details
        cached = details.get("cached_tokens") if details is not None else None
        return Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=self.total_tokens
            if self.total_tokens is not None
            else prompt + completion,
            prompt_tokens_details=(
                None
                if details is None
                else PromptTokensDetails(cached_tokens=cached if isinstance(cached, int) else 0)
            ),
            cache_creation_input_tokens=self.cache_creation_input_tokens,
        )


class _WireCompletion(msgspec.Struct):
    """A chat completion as servers really send it: lenient where they differ (no ``id``,
    null ``content``, no ``usage``); strict where an answer would be meaningless."""

    choices: list[_WireChoice] = msgspec.field(default_factory=list)
    id: str | None = ""
    created: int | float | None = 0
    model: str | None = ""
    usage: dict[str, Any] | None = None
    system_fingerprint: Any = None


_decode_completion = msgspec.json.Decoder(_WireCompletion).decode


class ChatAnswer(msgspec.Struct, frozen=True, kw_only=True):
    """A chat completion, parsed, with the usage as the server stated it."""

    completion: ChatCompletion
    """Normalised: null content reads as ``""``, a missing usage as zero tokens."""
    raw_usage: dict[str, Any] | None
    """The ``usage`` object as sent, with what :class:`Usage` leaves out (OpenRouter's
    ``cost``, cached tokens); ``None`` when the server sent none."""

    @property
    def text(self) -> str:
        return self.completion.choices[0].message.content or ""

    @property
    def finish_reason(self) -> str | None:
        return self.completion.choices[0].finish_reason


def _logprobs(sent: Any) -> ChoiceLogprobs | None:
    """The choice's token log-probabilities in OpenAI's shape; None when absent or in another
    (the legacy completions' ``tokens`` and ``token_logprobs``, say)."""
    if sent is None:
        return None
    try:
        return msgspec.convert(sent, ChoiceLogprobs)
    except msgspec.ValidationError:
        return None


def _tool_calls(sent: Any) -> list[ToolCall] | None:
    """The message's calls in OpenAI's shape; None when absent or in another."""
    if not sent:
        return None
    try:
        return msgspec.convert(sent, list[ToolCall])
    except msgspec.ValidationError:
        return None


def read_completion(payload: bytes, where: str = "the server") -> ChatAnswer:
    """``payload`` as a chat completion, or :class:`LLMUnusableAnswer` saying why not."""
    try:
        wire = _decode_completion(payload)
        usage = msgspec.convert(wire.usage or {}, WireUsage)
    except UNREADABLE_JSON as exc:
        raise LLMUnusableAnswer(
            f"{where} answered with something that is not a chat completion "
            f"({why_unreadable(exc)}): "
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
        id=wire.id or "",
        created=int(wire.created or 0),
        model=wire.model or "",
        choices=[
            ChatChoice(
                index=choice.index,
                message=AssistantMessage(
                    content=choice.message.content or "",
                    tool_calls=_tool_calls(choice.message.tool_calls),
                ),
                finish_reason=choice.finish_reason,
                logprobs=_logprobs(choice.logprobs),
            )
            for choice in wire.choices
        ],
        usage=usage.as_usage(),
        system_fingerprint=(
            wire.system_fingerprint if isinstance(wire.system_fingerprint, str) else None
        ),
    )
    return ChatAnswer(completion=completion, raw_usage=wire.usage)
