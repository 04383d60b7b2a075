"""A LangChain chat model over an OpenAI-compatible ``/v1/chat/completions``.

For the provider router (which speaks only OpenAI's API) without ``langchain-openai``: the
router's ``capability`` extension and JSON-schema answers (``format=<schema>``, as ChatOllama
takes it) are what PAS nodes need, and the shared client (``libs/common/clients/
openai_client.py``) gives exactly that, its errors included (``LLMTransientError`` and its
kinds are worth another attempt; ``LLMRefused`` and ``LLMUnusableAnswer`` are not).
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

COST_KEY = "cost_usd"
"""Where an answer's ``response_metadata`` carries the cost the endpoint stated."""

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def _wire_message(message: BaseMessage) -> dict[str, str]:
    # ``text`` is a str subclass (callable too) that msgspec does not encode as it is.
    return {"role": _ROLES.get(message.type, "user"), "content": str(message.text)}


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
        answer = await self.client.complete(body, headers=headers)
        completion = answer.completion
        choice = completion.choices[0]
        usage = completion.usage
        cost = (answer.raw_usage or {}).get("cost")
        metadata: dict[str, Any] = {
            "model_name": completion.model,
            "finish_reason": choice.finish_reason,
        }
        if isinstance(cost, int | float) and not isinstance(cost, bool):
            # The call's cost in USD, where the endpoint states it (OpenRouter's accounting).
            metadata[COST_KEY] = float(cost)
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
