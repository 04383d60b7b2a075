"""Ollama-compatible endpoints, so the ``ollama`` client and ``ChatOllama`` work against PAS.

``/generate`` is the spec's path; ``/api/generate``, ``/api/chat``, ``/api/tags``, ``/api/ps``,
``/api/show`` and ``/api/version`` are Ollama's own. ``stream: true`` answers NDJSON lines.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType, Schema
from litestar.params import JSONBody
from litestar.response import Stream

from libs.common.errors import PASError
from libs.common.kit import open_write, problem_responses
from libs.common.kit.openapi import answered_also_as, documented_answer
from libs.common.kit.problems import OLLAMA_ERRORS
from libs.common.kit.streaming import closes_when_sent
from libs.common.schemas.embeddings import (
    OllamaEmbeddingsRequest,
    OllamaEmbeddingsResponse,
    OllamaEmbedRequest,
    OllamaEmbedResponse,
    texts_of,
)
from libs.common.schemas.llm import (
    TokenLogprob,
    ToolCall,
)
from libs.common.schemas.ollama import (
    GenerateRequest,
    GenerateResponse,
    OllamaChatRequest,
    OllamaChatResponse,
    OllamaLoaded,
    OllamaLoadedModel,
    OllamaMessage,
    OllamaModel,
    OllamaModelDetails,
    OllamaShowRequest,
    OllamaShowResponse,
    OllamaTags,
)
from services.llm.backends.base import Completion, Generation, logprobs_after
from services.llm.runtime import LLMRuntime
from services.llm.tool_calling import CallsMade, ToolUse, WholeCallEvent, tool_events
from services.llm.translate import (
    from_ollama_chat,
    from_ollama_generate,
    ollama_calls,
    ollama_timestamp,
    ollama_timings,
)

NDJSON = "application/x-ndjson"
OLLAMA_API_VERSION = "0.12.0"
_encode = msgspec.json.Encoder().encode


class Framer(Protocol):
    """One line: its text, the answer when it is the last, the log-probabilities it carries,
    the tool calls it makes (chat only)."""

    def __call__(
        self,
        text: str,
        done: Completion | None,
        logprobs: list[TokenLogprob] | None,
        calls: list[ToolCall] | None = None,
    ) -> msgspec.Struct: ...


def _closing_fields(done: Completion | None) -> dict[str, Any]:
    """What Ollama adds to its last line: why it stopped, counts and durations."""
    if done is None:
        return {"done": False}
    return {
        "done": True,
        "done_reason": done.finish_reason,
        **msgspec.structs.asdict(ollama_timings(done)),
    }


def _generate_frame(model: str) -> Framer:
    def frame(
        text: str,
        done: Completion | None,
        logprobs: list[TokenLogprob] | None,
        calls: list[ToolCall] | None = None,
    ) -> msgspec.Struct:
        return GenerateResponse(
            model=model,
            created_at=ollama_timestamp(),
            response=text,
            logprobs=logprobs,
            **_closing_fields(done),
        )

    return frame


def _chat_frame(model: str) -> Framer:
    def frame(
        text: str,
        done: Completion | None,
        logprobs: list[TokenLogprob] | None,
        calls: list[ToolCall] | None = None,
    ) -> msgspec.Struct:
        return OllamaChatResponse(
            model=model,
            created_at=ollama_timestamp(),
            message=OllamaMessage(
                role="assistant", content=text, tool_calls=ollama_calls(calls) if calls else None
            ),
            logprobs=logprobs,
            **_closing_fields(done),
        )

    return frame


async def _ndjson(
    events: AsyncGenerator[WholeCallEvent, None], frame: Framer
) -> AsyncGenerator[bytes, None]:
    logprobs_sent = 0
    try:
        async for event in events:
            if isinstance(event, CallsMade):
                # As Ollama: the calls in a line of their own, before the last.
                yield _encode(frame("", None, None, event.calls)) + b"\n"
            elif isinstance(event, Completion):
                # Those the lines before did not carry (as Ollama, each line has its own).
                rest = logprobs_after(event, logprobs_sent)
                yield _encode(frame("", event, rest)) + b"\n"
            else:
                logprobs_sent += len(event.logprobs or ())
                yield _encode(frame(event.text, None, event.logprobs)) + b"\n"
    except PASError as exc:
        # Ollama reports a failure inside a stream as an {"error": ...} line.
        yield _encode({"error": str(exc)}) + b"\n"
    finally:
        await events.aclose()


def _ndjson_of(line: str) -> Schema:
    return Schema(
        type=OpenAPIType.STRING,
        description=f"stream=true: one {line} per line, the last with done=true (or an "
        "{error} line if the model fails mid-answer)",
    )


_NEVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).isoformat()
"""A loaded model's unload time: none (Ollama's keep-alive -1 also reads as a far date)."""


def _digest(runtime: LLMRuntime) -> str:
    model = runtime.backend.model
    return hashlib.sha256(f"{model.name}:{model.size_bytes}".encode()).hexdigest()


def _details(runtime: LLMRuntime) -> OllamaModelDetails:
    model = runtime.backend.model
    return OllamaModelDetails(
        format=model.format,
        family=model.family,
        families=[model.family] if model.family else [],
        parameter_size=model.parameter_size,
        quantization_level=model.quantization,
    )


async def _respond(
    runtime: LLMRuntime,
    endpoint: str,
    generation: Generation,
    frame: Framer,
    stream: bool,
    *,
    tools: ToolUse | None = None,
) -> Response[Any]:
    """One JSON answer, or NDJSON lines as the answer is made (with tools, as
    :func:`tool_events` gives it)."""
    if stream:
        events = await runtime.open_stream(endpoint, generation)
        body = _ndjson(events if tools is None else tool_events(events, tools), frame)
        return Stream(body, media_type=NDJSON, background=closes_when_sent(body))
    completion = await runtime.answer(endpoint, generation)
    read = None if tools is None else tools.read(completion.text)
    if read is not None and read.calls is not None:
        return Response(frame("", completion, completion.logprobs, read.calls))
    text = completion.text if read is None else read.content or ""
    return Response(frame(text, completion, completion.logprobs))


class OllamaController(Controller):
    tags = ("ollama",)
    opt = OLLAMA_ERRORS

    @post(
        ["/generate", "/api/generate"],
        status_code=200,
        summary="Generate (Ollama-compatible); streams NDJSON unless stream=false, as Ollama",
        operation_class=answered_also_as({NDJSON: _ndjson_of("GenerateResponse")}),
        responses={
            200: documented_answer(GenerateResponse, "The answer, or NDJSON lines"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def generate(
        self, data: JSONBody[GenerateRequest], runtime: NamedDependency[LLMRuntime]
    ) -> Response[Any]:
        frame = _generate_frame(runtime.model_name)
        return await _respond(runtime, "generate", from_ollama_generate(data), frame, data.stream)

    @post(
        "/api/chat",
        status_code=200,
        summary="Ollama's chat; streams NDJSON unless stream=false",
        operation_class=answered_also_as({NDJSON: _ndjson_of("OllamaChatResponse")}),
        responses={
            200: documented_answer(OllamaChatResponse, "The answer, or NDJSON lines"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def api_chat(
        self, data: JSONBody[OllamaChatRequest], runtime: NamedDependency[LLMRuntime]
    ) -> Response[Any]:
        generation, tools = from_ollama_chat(data)
        frame = _chat_frame(runtime.model_name)
        return await _respond(runtime, "chat", generation, frame, data.stream, tools=tools)

    @post(
        "/api/embed",
        status_code=200,
        summary="Ollama's embeddings: a normalised vector per text",
        responses={
            200: documented_answer(OllamaEmbedResponse, "The vectors, in order"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def api_embed(
        self, data: JSONBody[OllamaEmbedRequest], runtime: NamedDependency[LLMRuntime]
    ) -> OllamaEmbedResponse:
        embedded = await runtime.embed("embed", texts_of(data.input), truncate=data.truncate)
        return OllamaEmbedResponse(
            model=runtime.model_name,
            embeddings=embedded.vectors,
            total_duration=embedded.total_ns,
            load_duration=0,
            prompt_eval_count=embedded.prompt_tokens,
        )

    @post(
        "/api/embeddings",
        status_code=200,
        summary="Ollama's older embeddings: one text's vector",
        responses={
            200: documented_answer(OllamaEmbeddingsResponse, "The vector"),
            **problem_responses(400, 401, 413, 503, 504),
        },
    )
    async def api_embeddings(
        self, data: JSONBody[OllamaEmbeddingsRequest], runtime: NamedDependency[LLMRuntime]
    ) -> OllamaEmbeddingsResponse:
        # Ollama's older endpoint never truncates (its newer one does by default).
        embedded = await runtime.embed("embed", [data.prompt], truncate=False)
        return OllamaEmbeddingsResponse(embedding=embedded.vectors[0])

    @get("/api/tags", summary="Models this service serves (Ollama's list)")
    async def list_models(self, runtime: NamedDependency[LLMRuntime]) -> OllamaTags:
        model = runtime.backend.model
        return OllamaTags(
            models=[
                OllamaModel(
                    name=model.name,
                    model=model.name,
                    modified_at=datetime.fromtimestamp(runtime.started_at, UTC).isoformat(),
                    size=model.size_bytes,
                    digest=_digest(runtime),
                    details=_details(runtime),
                )
            ]
        )

    @get("/api/ps", summary="The model this service keeps in memory (Ollama's ps)")
    async def loaded_models(self, runtime: NamedDependency[LLMRuntime]) -> OllamaLoaded:
        """The served model, loaded from start to stop (``ollama ps``, Open WebUI ask)."""
        model = runtime.backend.model
        return OllamaLoaded(
            models=[
                OllamaLoadedModel(
                    name=model.name,
                    model=model.name,
                    size=model.size_bytes,
                    digest=_digest(runtime),
                    details=_details(runtime),
                    expires_at=_NEVER,
                    # The embedded build is CPU-only; another backend's GPU is not PAS's to see.
                    size_vram=0,
                    context_length=model.context_length or 0,
                )
            ]
        )

    @post(
        "/api/show",
        status_code=200,
        summary="Details of the served model (Ollama's show)",
        opt=open_write("Ollama's model details, asked with a JSON body: no model call"),
        responses=problem_responses(400, 413),
    )
    async def show(
        self, data: JSONBody[OllamaShowRequest], runtime: NamedDependency[LLMRuntime]
    ) -> OllamaShowResponse:
        model = runtime.backend.model
        info: dict[str, Any] = {"general.architecture": model.family}
        if model.context_length:
            info[f"{model.family or 'model'}.context_length"] = model.context_length
        return OllamaShowResponse(
            modelfile=f"# served by PAS {runtime.profile.title}\nFROM {model.name}\n",
            parameters="",
            template="{{ .Prompt }}",
            details=_details(runtime),
            model_info=info,
            capabilities=["completion", "tools"],
            modified_at=datetime.fromtimestamp(runtime.started_at, UTC).isoformat(),
        )

    @get("/api/version", summary="Ollama API version this service speaks")
    async def version(self) -> dict[str, str]:
        return {"version": OLLAMA_API_VERSION}
