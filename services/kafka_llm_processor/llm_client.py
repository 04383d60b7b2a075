"""Asking an OpenAI-compatible server, with errors sorted into worth-retrying and not."""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from libs.common.clients.openai_compat import openai_base_url
from libs.common.schemas.llm import ChatCompletion


class TransientLLMError(Exception):
    """Timeout, refused connection, 5xx or 429: another attempt may work."""


class PermanentLLMError(Exception):
    """The server refused this request (a 4xx): retrying will not help."""


class LLMAnswer(msgspec.Struct, frozen=True):
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


class LLMClient:
    def __init__(
        self, url: str, *, model: str | None, timeout_s: float, api_key: str | None = None
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._http = httpx.AsyncClient(
            base_url=openai_base_url(url),
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=1024),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def ask(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
    ) -> LLMAnswer:
        body: dict[str, Any] = {"messages": messages, "temperature": 0, "max_tokens": max_tokens}
        if self._model:
            body["model"] = self._model
        if json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": json_schema},
            }
        try:
            response = await self._http.post("/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise TransientLLMError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientLLMError(f"LLM answered {response.status_code}: {response.text[:300]}")
        if response.is_error:
            raise PermanentLLMError(f"LLM refused ({response.status_code}): {response.text[:300]}")
        try:
            answer = msgspec.json.decode(response.content, type=ChatCompletion)
        except msgspec.DecodeError as exc:
            raise TransientLLMError(f"LLM answer was not a chat completion: {exc}") from exc
        choice = answer.choices[0]
        return LLMAnswer(
            text=choice.message.content,
            model=answer.model,
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            finish_reason=choice.finish_reason,
        )
