"""Asking an OpenAI-compatible server, with errors sorted into worth-retrying and not."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
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
    """aiohttp, not httpx, on purpose: the processor keeps many calls in flight, and httpx's
    pool slows down as connections grow (247 req/s at 64 against 1,512 at 1 on the same
    server, where aiohttp keeps above 8,000); see docs/benchmarks.md."""

    def __init__(
        self, url: str, *, model: str | None, timeout_s: float, api_key: str | None = None
    ) -> None:
        self._url = f"{openai_base_url(url)}/chat/completions"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(timeout_s, 5.0))
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the event loop that will use it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1024),
                timeout=self._timeout,
                headers=self._headers,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def ask(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
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
            async with self._client().post(self._url, json=body, headers=headers) as response:
                status = response.status
                payload = await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientLLMError(f"{type(exc).__name__}: {exc}") from exc
        if status == 429 or status >= 500:
            raise TransientLLMError(f"LLM answered {status}: {payload[:300]!r}")
        if status >= 400:
            raise PermanentLLMError(f"LLM refused ({status}): {payload[:300]!r}")
        try:
            answer = msgspec.json.decode(payload, type=ChatCompletion)
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
