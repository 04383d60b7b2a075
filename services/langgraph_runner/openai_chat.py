"""A LangChain chat model over an OpenAI-compatible ``/v1/chat/completions``.

For the provider router (which speaks only OpenAI's API) without ``langchain-openai``: the
router's ``capability`` extension, JSON-schema answers (``format=<schema>``, as ChatOllama
takes it) and tool calls (``bind_tools``, as ChatOllama and ChatOpenAI take them) are what PAS
nodes need, and the shared client (``libs/common/clients/openai_client.py``) gives exactly
that, its errors included (``LLMTransientError`` and its kinds are worth another attempt;
``LLMRefused`` and ``LLMUnusableAnswer`` are not). A 429 or 503 that says when to come back
(``Retry-After``: an overloaded PAS LLM service, the router, a provider's rate limit) is tried
once more after that wait, within ``longest_wait_s``: LangGraph's node retries wait their own
backoff, which knows nothing of the server's.

Each call is a GenAI CLIENT span (``chat <model>``, OpenTelemetry's GenAI conventions) with the
tokens and the cost the endpoint stated; the HTTP request under it carries its ``traceparent``
(the aiohttp instrumentation, when tracing is on), so the router's spans continue the run's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.messages.ai import InputTokenDetails, UsageMetadata
from langchain_core.output_parsers.openai_tools import make_invalid_tool_call, parse_tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from libs.common.clients.chat_completions import ChatAnswer
from libs.common.clients.llm_errors import LLMTimeout, LLMTransientError
from libs.common.clients.openai_client import OpenAIClient
from libs.common.genai_tracing import (
    CHAT,
    genai_span,
    record_usage,
    requested_generation,
)
from libs.common.schemas.llm import ToolCall, Usage

COST_KEY = "cost_usd"
"""Where an answer's ``response_metadata`` carries the cost the endpoint stated."""

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def _wire_message(message: BaseMessage) -> dict[str, Any]:
    # ``text`` is a str subclass (callable too) that msgspec does not encode as it is.
    wire: dict[str, Any] = {"role": _ROLES.get(message.type, "user"), "content": str(message.text)}
    if isinstance(message, AIMessage) and message.tool_calls:
        wire["tool_calls"] = [
            {
                "id": call["id"],
                "type": "function",
                "function": {"name": call["name"], "arguments": json.dumps(call["args"])},
            }
            for call in message.tool_calls
        ]
    elif isinstance(message, ToolMessage):
        wire["tool_call_id"] = message.tool_call_id
    return wire


def _wire_tool_choice(
    choice: str | bool | dict[str, Any] | None,
) -> str | dict[str, Any] | None:
    """LangChain's ``tool_choice`` as OpenAI's: "any" (or True, as ChatOpenAI takes it) is
    "required", False none given, a bare name the named function."""
    if choice is True or choice == "any":
        return "required"
    if choice is None or choice is False:
        return None
    if isinstance(choice, dict) or choice in {"auto", "none", "required"}:
        return choice
    return {"type": "function", "function": {"name": choice}}


def read_tool_calls(calls: list[ToolCall] | None) -> tuple[list[Any], list[Any]]:
    """The answer's calls as LangChain's tool calls, and those whose arguments do not parse."""
    parsed: list[Any] = []
    invalid: list[Any] = []
    for call in calls or []:
        raw = msgspec.to_builtins(call)
        try:
            parsed.append(parse_tool_call(raw, return_id=True))
        except OutputParserException as exc:
            invalid.append(make_invalid_tool_call(raw, str(exc)))
    return parsed, invalid


def _stated_cost(usage: Mapping[str, Any] | None) -> float | None:
    """The call's cost in USD, where the endpoint states it (OpenRouter's accounting)."""
    cost = (usage or {}).get("cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        return float(cost)
    return None


class OpenAICompatibleChat(BaseChatModel):
    """Async only: LangGraph nodes in PAS are coroutines."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    temperature: float = 0.0
    top_p: float | None = None
    max_tokens: int = 256
    seed: int = 0
    stop: list[str] = Field(default_factory=list)
    """Stop sequences of every call (a call's own ``stop`` replaces them)."""
    timeout_s: float | None = None
    """Each request's bound, its answer read (``None``: the client's bounds)."""
    capability: str | None = None
    client: OpenAIClient
    """Shared by every chat model of the runner (its owner closes it)."""
    call_headers: Callable[[], Mapping[str, str]] | None = None
    """Headers for the call being made, read at call time (the run's attribution)."""
    provider: str = "openai"
    """``gen_ai.provider.name`` of its spans: the API spoken (the router, vLLM...), as OpenAI
    client instrumentations name OpenAI-compatible endpoints."""
    longest_wait_s: float = 10.0
    """The longest ``Retry-After`` waited for before the one more try; a longer one fails the
    call at once (to the node's retries, or the run's failure)."""

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | bool | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The model with ``tools`` offered in OpenAI's shape (``tool_choice``: "auto",
        "required" or "any" or True, "none", or a tool's name)."""
        return self.bind(
            tools=[convert_to_openai_tool(tool) for tool in tools],
            tool_choice=_wire_tool_choice(tool_choice),
            **kwargs,
        )

    @property
    def _llm_type(self) -> str:
        return "pas-openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "capability": self.capability}

    async def _complete(
        self, body: dict[str, Any], headers: Mapping[str, str] | None
    ) -> ChatAnswer:
        try:
            return await self._request(body, headers)
        except LLMTransientError as exc:
            wait_s = exc.retry_after_s
            if wait_s is None or wait_s > self.longest_wait_s:
                raise
        await asyncio.sleep(wait_s)
        return await self._request(body, headers)

    async def _request(self, body: dict[str, Any], headers: Mapping[str, str] | None) -> ChatAnswer:
        try:
            return await self.client.complete(body, headers=headers, timeout_s=self.timeout_s)
        except LLMTimeout as exc:
            if self.timeout_s is None:
                raise
            # Say which bound it was: the run's timeout_s, not the runner's.
            raise LLMTimeout(f"no answer within timeout_s={self.timeout_s:g} s ({exc})") from exc

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise NotImplementedError("OpenAICompatibleChat is async only; use ainvoke")

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire_message(m) for m in messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.top_p is not None:
            body["top_p"] = self.top_p
        if stop or self.stop:
            body["stop"] = stop or self.stop
        if self.capability:
            body["capability"] = self.capability
        if kwargs.get("tools"):
            body["tools"] = kwargs["tools"]
            if kwargs.get("tool_choice") is not None:
                body["tool_choice"] = kwargs["tool_choice"]
        answer_format = kwargs.get("format")
        if isinstance(answer_format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": answer_format, "strict": True},
            }
        elif answer_format == "json":
            body["response_format"] = {"type": "json_object"}
        headers = self.call_headers() if self.call_headers is not None else None
        with genai_span(
            CHAT,
            model=self.model,
            provider=self.provider,
            attributes=requested_generation(
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                stop=body.get("stop"),
            ),
        ) as span:
            answer = await self._complete(body, headers)
            completion = answer.completion
            usage = completion.usage
            cost = _stated_cost(answer.raw_usage)
            record_usage(
                span,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cached_input_tokens=usage.cached_tokens,
                cache_written_input_tokens=usage.cache_creation_input_tokens,
                response_model=completion.model,
                cost_usd=cost,
            )
        choice = completion.choices[0]
        metadata: dict[str, Any] = {
            "model_name": completion.model,
            "finish_reason": choice.finish_reason,
        }
        if cost is not None:
            metadata[COST_KEY] = cost
        calls, invalid = read_tool_calls(choice.message.tool_calls)
        message = AIMessage(
            content=choice.message.content or "",
            tool_calls=calls,
            invalid_tool_calls=invalid,
            usage_metadata=_usage_metadata(usage),
            response_metadata=metadata,
        )
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": completion.model},
        )


def _usage_metadata(usage: Usage) -> UsageMetadata:
    """LangChain's usage, with the prompt tokens a prompt cache gave and those written to it,
    where the server said."""
    metadata = UsageMetadata(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )
    details = InputTokenDetails()
    if usage.cached_tokens is not None:
        details["cache_read"] = usage.cached_tokens
    if usage.cache_creation_input_tokens is not None:
        details["cache_creation"] = usage.cache_creation_input_tokens
    if details:
        metadata["input_token_details"] = details
    return metadata
