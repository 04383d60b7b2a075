"""OpenAI-compatible endpoints: ``/chat/completions`` (also under ``/v1``) and ``/v1/models``."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
import numpy as np
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import JSONBody
from litestar.response import ServerSentEvent

from libs.common.errors import InvalidRequest, PASError
from libs.common.kit import problem_responses
from libs.common.kit.openapi import answered_also_as, documented_answer
from libs.common.kit.problems import OPENAI_ERRORS
from libs.common.kit.streaming import closes_when_sent
from libs.common.schemas.embeddings import (
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
    texts_of,
)
from libs.common.schemas.llm import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkDelta,
    FunctionCallDelta,
    ModelCard,
    ModelList,
    ToolCall,
    ToolCallDelta,
)
from services.llm.backends.base import Completion, StreamEvent, logprobs_after
from services.llm.call_stream import ArgumentsWritten, CallStarted
from services.llm.choices import answer_all, choice_generations, merged, open_all
from services.llm.runtime import LLMRuntime
from services.llm.tool_calling import CallsMade, ToolEvent, ToolUse, tool_events
from services.llm.translate import completion_id, from_openai, to_openai, usage_of

_encode = msgspec.json.Encoder().encode
SSE = "text/event-stream"


# Before OpenAPI 3.2 the schema of an event stream describes each event (as schemathesis
# reads it): every event carries one chunk as JSON in ``data``, the last ``[DONE]``.
SSE_EVENT = Schema(
    type=OpenAPIType.OBJECT,
    required=["data"],
    properties={
        "data": Schema(
            type=OpenAPIType.STRING,
            description="A ChatCompletionChunk as JSON (with usage last when "
            "stream_options.include_usage), an {error} object if the model fails mid-answer, "
            "then `[DONE]`",
        )
    },
    description="stream=true: one server-sent event per chunk",
)


async def _sse(
    streams: list[AsyncGenerator[StreamEvent, None]],
    model: str,
    include_usage: bool,
    tools: ToolUse | None = None,
) -> AsyncGenerator[bytes, None]:
    """The answers as chunks, each naming its choice (``n`` streams are merged as their
    events come); with tools, as :func:`tool_events` gives them: each call's id and name as
    soon as they are written, then its arguments piece by piece."""
    chunk_id = completion_id()
    created = int(time.time())

    def chunk(
        index: int,
        delta: ChunkDelta,
        finish: str | None = None,
        logprobs: ChoiceLogprobs | None = None,
    ) -> bytes:
        choice = ChunkChoice(index=index, delta=delta, finish_reason=finish, logprobs=logprobs)
        return _encode(
            ChatCompletionChunk(id=chunk_id, created=created, model=model, choices=[choice])
        )

    answers: list[AsyncGenerator[ToolEvent, None]] = [
        events if tools is None else tool_events(events, tools, piecewise=True)
        for events in streams
    ]
    for index in range(len(answers)):
        yield chunk(index, ChunkDelta(role="assistant", content=""))
    logprobs_sent = [0] * len(answers)
    called = [False] * len(answers)
    begun = [0] * len(answers)  # calls streamed piece by piece
    completions: list[Completion] = []
    events = merged(answers)
    try:
        async for index, event in events:
            if isinstance(event, CallStarted | ArgumentsWritten | CallsMade):
                delta = _tool_delta(event, begun[index])
                begun[index] += isinstance(event, CallStarted)
                called[index] = called[index] or isinstance(event, CallsMade)
                if delta is not None:
                    yield chunk(index, delta)
            elif isinstance(event, Completion):
                completions.append(event)
                finish_reason = "tool_calls" if called[index] else event.finish_reason
                # Log-probabilities the deltas did not carry come with the last chunk (a
                # client adds up every chunk's ``logprobs.content``).
                rest = logprobs_after(event, logprobs_sent[index])
                yield chunk(
                    index,
                    ChunkDelta(),
                    finish_reason,
                    None if rest is None else ChoiceLogprobs(content=rest),
                )
            else:
                logprobs = event.logprobs
                logprobs_sent[index] += len(logprobs or ())
                yield chunk(
                    index,
                    ChunkDelta(content=event.text),
                    logprobs=None if logprobs is None else ChoiceLogprobs(content=logprobs),
                )
    except PASError as exc:
        # The status line is gone; say it in the stream the way OpenAI does, never truncate.
        error = {"message": str(exc), "type": type(exc).__name__, "code": exc.status_code}
        yield _encode({"error": error})
    else:
        if include_usage and completions:
            usage = usage_of(completions)
            yield _encode(
                ChatCompletionChunk(
                    id=chunk_id, created=created, model=model, choices=[], usage=usage
                )
            )
    finally:
        await events.aclose()
        for answer in answers:
            await answer.aclose()
    yield b"[DONE]"


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    """A vector as floats, or as OpenAI's base64 of its little-endian float32 bytes."""
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
    return vector


def _tool_delta(
    event: CallStarted | ArgumentsWritten | CallsMade, streamed: int
) -> ChunkDelta | None:
    """A call's start or a piece of its arguments; the calls read whole, less the ``streamed``
    first (None when every one was)."""
    if isinstance(event, CallStarted):
        return _call_delta(event.index, event.id, event.name, "")
    if isinstance(event, ArgumentsWritten):
        return _call_delta(event.index, None, None, event.text)
    return _calls_delta(event.calls, streamed) if len(event.calls) > streamed else None


def _calls_delta(calls: list[ToolCall], start: int = 0) -> ChunkDelta:
    """The calls from ``start`` on as one delta, each whole at its index (a client joins the
    parts of an index)."""
    return ChunkDelta(
        tool_calls=[
            _call_part(index, call.id, call.function.name, call.function.arguments)
            for index, call in enumerate(calls[start:], start)
        ]
    )


def _call_delta(index: int, call_id: str | None, name: str | None, arguments: str) -> ChunkDelta:
    """A part of call ``index``: its id and name first (OpenAI's first part of a call), then
    the pieces of its arguments."""
    return ChunkDelta(tool_calls=[_call_part(index, call_id, name, arguments)])


def _call_part(index: int, call_id: str | None, name: str | None, arguments: str) -> ToolCallDelta:
    """Call ``index`` in a delta: whole, its first part (id and name), or a piece of its
    arguments (no id: OpenAI names the type with the id only)."""
    return ToolCallDelta(
        index=index,
        id=call_id,
        type="function" if call_id else None,
        function=FunctionCallDelta(name=name, arguments=arguments),
    )


class OpenAIController(Controller):
    tags = ("openai",)
    opt = OPENAI_ERRORS

    @post(
        ["/chat/completions", "/v1/chat/completions"],
        status_code=200,
        summary="Chat completion (OpenAI-compatible); stream=true gives server-sent events",
        operation_class=answered_also_as({SSE: SSE_EVENT}),
        responses={
            200: documented_answer(ChatCompletion, "The answer, or an SSE stream"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def chat_completions(
        self, data: JSONBody[ChatCompletionRequest], runtime: NamedDependency[LLMRuntime]
    ) -> Response[Any]:
        generation, tools = from_openai(data)
        generations = choice_generations(generation, data.n)
        if data.stream:
            streams = await open_all(runtime, "chat_completions", generations)
            include_usage = data.stream_options is not None and data.stream_options.include_usage
            body = _sse(streams, runtime.model_name, include_usage, tools)
            return ServerSentEvent(body, background=closes_when_sent(body))
        completions = await answer_all(runtime, "chat_completions", generations)
        return Response(to_openai(completions, runtime.model_name, completion_id(), tools))

    @post(
        ["/embeddings", "/v1/embeddings"],
        status_code=200,
        summary="Embeddings (OpenAI-compatible): a normalised vector per text",
        responses={
            200: documented_answer(EmbeddingList, "The vectors, in the texts' order"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def embeddings(
        self, data: JSONBody[EmbeddingRequest], runtime: NamedDependency[LLMRuntime]
    ) -> EmbeddingList:
        if data.dimensions is not None:
            raise InvalidRequest(
                "dimensions: the vectors come at the model's own size; leave it out"
            )
        texts = texts_of(data.input)
        # OpenAI refuses a text longer than its model reads; so does this.
        embedded = await runtime.embed("embeddings", texts, truncate=False)
        return EmbeddingList(
            data=[
                Embedding(index=index, embedding=_encoded(vector, data.encoding_format))
                for index, vector in enumerate(embedded.vectors)
            ],
            model=runtime.model_name,
            usage=EmbeddingUsage(
                prompt_tokens=embedded.prompt_tokens, total_tokens=embedded.prompt_tokens
            ),
        )

    @get("/v1/models", summary="The model this service serves")
    async def models(self, runtime: NamedDependency[LLMRuntime]) -> ModelList:
        return ModelList(data=[ModelCard(id=runtime.model_name, created=runtime.started_at)])
