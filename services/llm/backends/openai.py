"""Any OpenAI-compatible server: vLLM, llama.cpp's server, OpenAI itself (through the shared
client, ``libs/common/clients/openai_client.py``)."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Literal, TypeVar

import msgspec
import structlog
from prometheus_client.registry import Collector

from libs.common.clients.llm_errors import LLMError, LLMRefused, LLMTimeout, LLMTransientError
from libs.common.clients.openai_client import OpenAIClient
from libs.common.clients.openai_compat import openai_base_url
from libs.common.errors import BackendTimeout, BackendUnavailable, InvalidRequest, PASError
from libs.common.schemas.llm import ModelList, TokenLogprob, Usage
from services.llm.backends.base import (
    DRY_FIELDS,
    PENALTY_FIELDS,
    BackendHealth,
    Completion,
    Embeddings,
    Generation,
    ModelDescription,
    StreamEvent,
    TextDelta,
    logprobs_if_asked,
)

logger = structlog.get_logger("pas.llm.openai")
Sent = TypeVar("Sent")

EXTRA_FIELDS: Final = ("top_k", "min_p", *PENALTY_FIELDS, *DRY_FIELDS)
"""Sampling fields past OpenAI's own that an OpenAI-compatible server is sent when asked."""


class OpenAIBackend:
    kind = "openai"
    collectors: Sequence[Collector] = ()

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
        self._client = OpenAIClient(self.location, api_key=api_key, timeout_s=timeout_s)

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
        async with self._backend_errors():
            return await self._client.models(timeout_s=5)

    async def close(self) -> None:
        await self._client.aclose()

    @asynccontextmanager
    async def _backend_errors(self) -> AsyncIterator[None]:
        """The shared client's errors as the LLM services' own: each names the server and
        what to check; a refused request of the caller's (400, 422) stays a 400."""
        where = f"{self._server} at {self.location}"
        try:
            yield
        except LLMTimeout as exc:
            kind = type(exc.__cause__ or exc).__name__
            raise BackendTimeout(
                f"{where} did not answer within {self._timeout_s:g}s ({kind})"
            ) from exc
        except LLMError as exc:
            cause = exc.__cause__
            if exc.status is None and isinstance(exc, LLMTransientError) and cause is not None:
                raise BackendUnavailable(
                    f"{where} is not reachable: {type(cause).__name__}: {cause}"
                ) from exc
            if exc.status is None:  # an unusable answer, or an error reported mid-stream
                raise BackendUnavailable(str(exc)) from exc
            message = (
                f"{self._server} answered {exc.status}: {exc.body.decode(errors='replace')[:500]}"
            )
            if exc.status in (400, 422):
                raise InvalidRequest(message) from exc
            raise BackendUnavailable(message) from exc

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
        # top_k, min_p, repeat_* and dry_* are llama.cpp server's (vLLM's take top_k and min_p
        # and ignore the rest); OpenAI refuses them (a 400).
        for key in ("temperature", "top_p", "max_tokens", "seed", *EXTRA_FIELDS):
            value = getattr(generation, key)
            if value is not None:
                body[key] = value
        if generation.stop:
            body["stop"] = generation.stop
        if generation.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in generation.logit_bias.items()}
        if generation.logprobs is not None:
            body["logprobs"] = True
            if generation.logprobs:
                body["top_logprobs"] = generation.logprobs
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

    async def _send(
        self,
        generation: Generation,
        *,
        stream: bool,
        call: Callable[[dict[str, Any]], Awaitable[Sent]],
    ) -> Sent:
        """Send the request; a server that refuses ``json_schema`` gets the older form once."""
        await self._learn_model_name()
        try:
            return await call(self._body(generation, stream=stream))
        except (LLMRefused, LLMTransientError) as exc:
            if not (
                generation.json_schema is not None
                and self._schema_style == "json_schema"
                # Some servers answer 500, not 400, for a response_format they do not know.
                and b"json_schema" in exc.body
            ):
                raise
        self._schema_style = "json_object"
        logger.info("server refused json_schema; sending json_object", server=self.location)
        return await call(self._body(generation, stream=stream))

    async def complete(self, generation: Generation) -> Completion:
        started = time.perf_counter_ns()
        async with self._backend_errors():
            answer = await self._send(generation, stream=False, call=self._client.complete)
        ended = time.perf_counter_ns()
        completion = answer.completion
        choice = completion.choices[0]
        return Completion(
            text=answer.text,
            finish_reason="length" if choice.finish_reason == "length" else "stop",
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens,
            cached_tokens=cached_tokens(completion.usage),
            eval_ns=ended - started,
            total_ns=ended - started,
            logprobs=logprobs_if_asked(
                generation, choice.logprobs.content if choice.logprobs else None
            ),
        )

    async def embed(self, texts: list[str], *, truncate: bool) -> Embeddings:
        """``POST /embeddings``: an OpenAI-compatible server refuses, or cuts, a text too long
        for its model as it does (it has no ``truncate``)."""
        started = time.perf_counter_ns()
        async with self._backend_errors():
            await self._learn_model_name()
            answer = await self._client.embed({"model": self._model_name, "input": texts})
        data = sorted(answer.data, key=lambda item: item.index)
        if len(data) != len(texts) or any(isinstance(item.embedding, str) for item in data):
            raise BackendUnavailable(
                f"{self.location} answered {len(data)} float vectors for {len(texts)} texts"
            )
        return Embeddings(
            vectors=[item.embedding for item in data if not isinstance(item.embedding, str)],
            prompt_tokens=answer.usage.prompt_tokens,
            total_ns=time.perf_counter_ns() - started,
        )

    async def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        started = time.perf_counter_ns()
        first: int | None = None
        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        delivered = 0  # of ``logprobs``, given with a delta
        finish = "stop"
        async with self._backend_errors():
            chunks = await self._send(generation, stream=True, call=self._client.stream)
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.logprobs and choice.logprobs.content:
                            logprobs.extend(choice.logprobs.content)
                        if choice.delta.content:
                            first = first or time.perf_counter_ns()
                            parts.append(choice.delta.content)
                            # With the tokens since the last delta (a character split over
                            # tokens comes after chunks with none).
                            yield TextDelta(
                                text=choice.delta.content,
                                logprobs=logprobs_if_asked(generation, logprobs[delivered:]),
                            )
                            delivered = len(logprobs)
                        if choice.finish_reason:
                            finish = choice.finish_reason
        usage = chunks.usage
        ended = time.perf_counter_ns()
        first = first or ended
        yield Completion(
            text="".join(parts),
            finish_reason="length" if finish == "length" else "stop",
            # Servers that ignore stream_options send no usage: then count what came (one
            # token a chunk, as llama.cpp's servers send them); the prompt stays uncounted.
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else len(parts),
            cached_tokens=cached_tokens(usage),
            prompt_eval_ns=first - started,
            eval_ns=ended - first,
            total_ns=ended - started,
            logprobs=logprobs_if_asked(generation, logprobs),
        )


def cached_tokens(usage: Usage | None) -> int | None:
    """The prompt tokens the server says it took from its cache (vLLM and OpenAI say it)."""
    details = None if usage is None else usage.prompt_tokens_details
    return None if details is None else details.cached_tokens
