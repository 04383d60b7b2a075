"""A LangChain chat model over an OpenAI-compatible ``/v1/chat/completions``.

For the provider router (which speaks only OpenAI's API) without ``langchain-openai``: the
router's ``capability`` extension and JSON-schema answers (``format=<schema>``, as ChatOllama
takes it) are what PAS nodes need, and a dozen lines of httpx give exactly that.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

from libs.common.errors import PASError


class TransientLLMError(PASError):
    """The endpoint was unreachable, timed out, or answered 5xx/429: worth another attempt."""

    status_code = 503


class LLMRequestRefused(PASError):
    """The endpoint refused the request (4xx): retrying would not help."""

    status_code = 502


class _Message(msgspec.Struct):
    content: str | None = None


class _Choice(msgspec.Struct):
    message: _Message
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    """The call's cost in USD, where the endpoint states it (OpenRouter's usage accounting)."""


class _Completion(msgspec.Struct):
    model: str = ""
    choices: list[_Choice] = msgspec.field(default_factory=list)
    usage: _Usage | None = None


COST_KEY = "cost_usd"
"""Where an answer's ``response_metadata`` carries the cost the endpoint stated."""

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}


def _wire_message(message: BaseMessage) -> dict[str, str]:
    return {"role": _ROLES.get(message.type, "user"), "content": message.text}


class OpenAICompatibleChat(BaseChatModel):
    """Async only: LangGraph nodes in PAS are coroutines."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model: str
    temperature: float = 0.0
    max_tokens: int = 256
    capability: str | None = None
    http: httpx.AsyncClient
    """Shared client whose ``base_url`` ends in ``/v1`` (auth headers set on it)."""

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
        try:
            response = await self.http.post("chat/completions", json=body)
        except httpx.TransportError as exc:
            raise TransientLLMError(f"{type(exc).__name__} from {self.http.base_url}") from exc
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientLLMError(f"{response.status_code}: {response.text[:300]}")
        if response.status_code >= 400:
            raise LLMRequestRefused(f"{response.status_code}: {response.text[:300]}")
        completion = msgspec.json.decode(response.content, type=_Completion)
        if not completion.choices:
            raise LLMRequestRefused("the completion has no choices")
        choice = completion.choices[0]
        usage = completion.usage or _Usage()
        metadata: dict[str, Any] = {
            "model_name": completion.model,
            "finish_reason": choice.finish_reason,
        }
        if usage.cost is not None:
            metadata[COST_KEY] = usage.cost
        message = AIMessage(
            content=choice.message.content or "",
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
