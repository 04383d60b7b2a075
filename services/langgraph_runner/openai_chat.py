"""A LangChain chat model over an OpenAI-compatible ``/v1/chat/completions``.

For the provider router (which speaks only OpenAI's API) without ``langchain-openai``: the
router's ``capability`` extension and JSON-schema answers (``format=<schema>``, as ChatOllama
takes it) are what PAS nodes need, and the shared client (``libs/common/clients/
openai_client.py``) gives exactly that, its errors included (``LLMTransientError`` and its
kinds are worth another attempt; ``LLMRefused`` and ``LLMUnusableAnswer`` are not).

Each call is a GenAI CLIENT span (``chat <model>``, OpenTelemetry's GenAI conventions) with the
tokens and the cost the endpoint stated; the HTTP request under it carries its ``traceparent``
(the aiohttp instrumentation, when tracing is on), so the router's spans continue the run's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from libs.common.clients.openai_client import OpenAIClient
from libs.common.genai_tracing import (
    CHAT,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_TEMPERATURE,
    genai_span,
    record_usage,
)

COST_KEY = "cost_usd"
"""Where an answer's ``response_metadata`` carries the cost the endpoint stated."""

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def _wire_message(message: BaseMessage) -> dict[str, str]:
    # ``text`` is a str subclass (callable too) that msgspec does not encode as it is.
    return {"role": _ROLES.get(message.type, "user"), "content": str(message.text)}


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
    max_tokens: int = 256
    capability: str | None = None
    client: OpenAIClient
    """Shared by every chat model of the runner (its owner closes it)."""
    call_headers: Callable[[], Mapping[str, str]] | None = None
    """Headers for the call being made, read at call time (the run's attribution)."""
    provider: str = "openai"
    """``gen_ai.provider.name`` of its spans: the API spoken (the router, vLLM...), as OpenAI
    client instrumentations name OpenAI-compatible endpoints."""

    @property
    def _llm_type(self) -> str:
        return "pas-openai-compatible"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model, "capability": self.capability}

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
            "seed": 0,
        }
        if stop:
            body["stop"] = stop
        if self.capability:
            body["capability"] = self.capability
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
            attributes={
                GEN_AI_REQUEST_MAX_TOKENS: self.max_tokens,
                GEN_AI_REQUEST_TEMPERATURE: self.temperature,
            },
        ) as span:
            answer = await self.client.complete(body, headers=headers)
            completion = answer.completion
            usage = completion.usage
            cost = _stated_cost(answer.raw_usage)
            record_usage(
                span,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
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
        message = AIMessage(
            content=choice.message.content,
            usage_metadata=UsageMetadata(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                total_tokens=usage.prompt_tokens + usage.completion_tokens,
            ),
            response_metadata=metadata,
        )
        return ChatResult(
            generations=[ChatGeneration(message=message)],
            llm_output={"model_name": completion.model},
        )
