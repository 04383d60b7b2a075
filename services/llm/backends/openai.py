"""Any OpenAI-compatible server: vLLM, llama.cpp's server, OpenAI itself."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any, Literal

import httpx
import msgspec
import structlog
from httpx_sse import EventSource

from libs.common.clients.openai_compat import openai_base_url
from libs.common.errors import BackendUnavailable, PASError
from libs.common.schemas.llm import ChatCompletion, ChatCompletionChunk, ModelList
from services.llm.backends.base import (
    BackendHealth,
    Completion,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
)
from services.llm.backends.remote import backend_call, raise_for_backend_status

_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
logger = structlog.get_logger("pas.llm.openai")


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
        self._server = "OpenAI-compatible server"
        self._schema_style: Literal["json_schema", "json_object"] = "json_schema"
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
            try:
                await self._learn_model_name()
            except PASError as exc:
                logger.warning("cannot ask the server for its model yet", error=str(exc))

    async def _learn_model_name(self) -> str:
        if self._model_name is None:
            models = await self._models()
            if not models.data:
                raise BackendUnavailable(f"{self.location} serves no model")
            self._model_name = models.data[0].id
        return self._model_name

    async def _models(self) -> ModelList:
        async with backend_call(self._server, self.location, self._timeout_s):
            response = await self._http.get("/models", timeout=5)
            await raise_for_backend_status(self._server, response)
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

    def _body(self, generation: Generation, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model_name,
            "messages": [msgspec.structs.asdict(m) for m in generation.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        for key in ("temperature", "top_p", "max_tokens", "seed"):
            value = getattr(generation, key)
            if value is not None:
                body[key] = value
        if generation.stop:
            body["stop"] = generation.stop
        if generation.json_schema is not None and self._schema_style == "json_schema":
            # vLLM dropped the guided_* keys (and ignores them); response_format is the way.
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": generation.json_schema},
            }
        elif generation.json_schema is not None:
            # llama-cpp-python's server knows only json_object, with the schema beside it.
            body["response_format"] = {"type": "json_object", "schema": generation.json_schema}
        elif generation.json_mode:
            body["response_format"] = {"type": "json_object"}
        return body

    async def _post(self, generation: Generation, *, stream: bool) -> httpx.Response:
        """Send the request; a server that refuses ``json_schema`` gets the older form once."""
        await self._learn_model_name()
        request = self._http.build_request(
            "POST", "/chat/completions", json=self._body(generation, stream=stream)
        )
        response = await self._http.send(request, stream=stream)
        if (
            response.is_error
            and generation.json_schema is not None
            and self._schema_style == "json_schema"
            # Some servers answer 500, not 400, for a response_format they do not know.
            and b"json_schema" in await response.aread()
        ):
            await response.aclose()
            self._schema_style = "json_object"
            logger.info("server refused json_schema; sending json_object", server=self.location)
            request = self._http.build_request(
                "POST", "/chat/completions", json=self._body(generation, stream=stream)
            )
            response = await self._http.send(request, stream=stream)
        return response

    async def complete(self, generation: Generation) -> Completion:
        started = time.perf_counter_ns()
        async with backend_call(self._server, self.location, self._timeout_s):
            response = await self._post(generation, stream=False)
            await raise_for_backend_status(self._server, response)
        answer = msgspec.json.decode(response.content, type=ChatCompletion)
        ended = time.perf_counter_ns()
        choice = answer.choices[0]
        return Completion(
            text=choice.message.content,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=answer.usage.prompt_tokens,
            completion_tokens=answer.usage.completion_tokens,
            eval_ns=ended - started,
            total_ns=ended - started,
        )

    async def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter_ns()
        first: int | None = None
        parts: list[str] = []
        finish = "stop"
        usage = None
        async with backend_call(self._server, self.location, self._timeout_s):
            response = await self._post(generation, stream=True)
            try:
                await raise_for_backend_status(self._server, response)
                async for event in EventSource(response).aiter_sse():
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
            finally:
                await response.aclose()
        ended = time.perf_counter_ns()
        first = first or ended
        yield Completion(
            text="".join(parts),
            finish_reason="length" if finish == "length" else "stop",
            # Servers that ignore stream_options send no usage: then count what came (one
            # token a chunk, as llama.cpp's servers send them); the prompt stays uncounted.
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else len(parts),
            prompt_eval_ns=first - started,
            eval_ns=ended - first,
            total_ns=ended - started,
        )
