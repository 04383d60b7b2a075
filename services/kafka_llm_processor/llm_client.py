"""Asking an OpenAI-compatible server for one document's answer, through the shared client
(``libs/common/clients/openai_client.py``), its failures sorted into worth retrying or not.

Each call is a GenAI CLIENT span (``chat <model>``) with the tokens the server counted; the
HTTP request under it carries its ``traceparent`` (the aiohttp instrumentation, when tracing
is on)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from libs.common.clients.llm_errors import LLMRefused, LLMTransientError, LLMUnusableAnswer
from libs.common.clients.openai_client import OpenAIClient
from libs.common.clients.openai_compat import openai_base_url
from libs.common.genai_tracing import (
    CHAT,
    genai_span,
    record_usage,
    requested_generation,
)

PROVIDER = "openai"
"""``gen_ai.provider.name`` of the calls: the API spoken (a PAS LLM service, the router or
vLLM behind it), as OpenAI client instrumentations name OpenAI-compatible endpoints."""


class TransientLLMError(LLMTransientError):
    """Timeout, refused connection, 5xx or 429, or an answer that is not a chat completion:
    another attempt may work. (Its name is what dead letters carry as ``error_type``.)"""


class PermanentLLMError(LLMRefused):
    """The server refused this request (a 4xx): retrying will not help."""


class LLMAnswer(msgspec.Struct, frozen=True):
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class LLMClient:
    """The processor's questions: its body (temperature 0, the task's JSON schema) on the
    shared client, with up to 1,024 calls in flight."""

    def __init__(
        self, url: str, *, model: str | None, timeout_s: float, api_key: str | None = None
    ) -> None:
        self._model = model
        self._client = OpenAIClient(
            openai_base_url(url),
            api_key=api_key,
            timeout_s=timeout_s,
            connections=1024,
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ask(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        sampling: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> LLMAnswer:
        """``sampling``: more request fields (``frequency_penalty``, say), under the ones this
        client sets."""
        body: dict[str, Any] = {
            **(sampling or {}),
            "messages": messages,
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if self._model:
            body["model"] = self._model
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        with genai_span(
            CHAT,
            model=self._model or "",
            provider=PROVIDER,
            attributes=requested_generation(max_tokens=max_tokens, temperature=0),
        ) as span:
            try:
                answer = await self._client.complete(body, headers=headers)
            except LLMRefused as exc:
                raise PermanentLLMError(str(exc), status=exc.status, body=exc.body) from exc
            except (LLMTransientError, LLMUnusableAnswer) as exc:
                # An answer that is not a chat completion is most often a server in trouble.
                raise TransientLLMError(
                    str(exc), status=exc.status, body=exc.body, retry_after_s=exc.retry_after_s
                ) from exc
            usage = answer.completion.usage
            record_usage(
                span,
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cached_input_tokens=usage.cached_tokens,
                cache_written_input_tokens=usage.cache_creation_input_tokens,
                response_model=answer.completion.model,
            )
        return LLMAnswer(
            text=answer.text,
            model=answer.completion.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            finish_reason=answer.finish_reason,
        )
