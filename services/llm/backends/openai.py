"""Any OpenAI-compatible server: vLLM, llama.cpp's server, OpenAI itself."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import httpx
import msgspec
from httpx_sse import aconnect_sse

from libs.common.errors import BackendUnavailable
from libs.common.schemas.llm import ChatCompletionChunk, ModelList
from services.llm.backends.base import (
    BackendHealth,
    Completion,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
    collect,
)
from services.llm.backends.remote import backend_call, raise_for_backend_status

_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode


def openai_base_url(url: str) -> str:
    """Accept ``http://host:8000`` as well as ``http://host:8000/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class OpenAIBackend:
    kind = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None,
        api_key: str | None,
        timeout_s: float,
        context_length: int | None = None,
    ) -> None:
        self.location = openai_base_url(base_url)
        self._timeout_s = timeout_s
        self._model_name = model
        self._context_length = context_length
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(base_url=self.location, headers=headers, timeout=timeout_s)

    @property
    def model(self) -> ModelDescription:
        return ModelDescription(
            name=self._model_name or "unknown", context_length=self._context_length
        )

    async def start(self) -> None:
        """Without a configured model name, serve the server's first model (as vLLM has one)."""
        if self._model_name is None:
            models = await self._models()
            if models.data:
                self._model_name = models.data[0].id

    async def _models(self) -> ModelList:
        async with backend_call("OpenAI-compatible server", self.location, self._timeout_s):
            response = await self._http.get("/models", timeout=5)
            await raise_for_backend_status("OpenAI-compatible server", response)
        return msgspec.json.decode(response.content, type=ModelList)

    async def close(self) -> None:
        await self._http.aclose()

    async def probe(self) -> BackendHealth:
        try:
            models = await self._models()
        except Exception as exc:
            return BackendHealth(answers=False, detail=str(exc))
        served = [m.id for m in models.data]
        if self._model_name is not None and self._model_name not in served:
            return BackendHealth(
                answers=False,
                detail=f"{self.location} serves {served}, not {self._model_name!r}",
            )
        return BackendHealth(answers=True, detail=f"{self.location} serves {served}")

    def _body(self, generation: Generation) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model.name,
            "messages": [msgspec.structs.asdict(m) for m in generation.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(generation, key)
            if value is not None:
                body[key] = value
        if generation.stop:
            body["stop"] = generation.stop
        if generation.json_schema is not None:
            # vLLM dropped the guided_* keys (and ignores them); response_format is the way.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": generation.json_schema},
            }
        elif generation.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, generation: Generation) -> Completion:
        return await collect(self.stream(generation))

    async def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter_ns()
        first: int | None = None
        parts: list[str] = []
        finish = "stop"
        usage = None
        server = "OpenAI-compatible server"
        async with (
            backend_call(server, self.location, self._timeout_s),
            aconnect_sse(
                self._http, "POST", "/chat/completions", json=self._body(generation)
            ) as source,
        ):
            await raise_for_backend_status(server, source.response)
            async for event in source.aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                chunk = _decode_chunk(event.data)
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.delta.content:
                        first = first or time.perf_counter_ns()
                        parts.append(choice.delta.content)
                        yield TextDelta(text=choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        if usage is None:
            raise BackendUnavailable(f"{server} sent no usage; it must honour stream_options")
        ended = time.perf_counter_ns()
        first = first or ended
        yield Completion(
            text="".join(parts),
            finish_reason="length" if finish == "length" else "stop",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            prompt_eval_ns=first - started,
            eval_ns=ended - first,
            total_ns=ended - started,
        )
