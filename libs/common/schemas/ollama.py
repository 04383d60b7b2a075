"""Ollama's API as the PAS LLM services speak it: ``/api/generate`` (and the spec's
``/generate``), ``/api/chat``, ``/api/tags``, ``/api/show``.

Requests accept fields they do not use (real clients send many); what PAS does not support is
refused by the service with a 400 naming the field, never silently ignored. The sampling bounds,
tools and log-probabilities are OpenAI's types (``llm.py``): the services map both APIs onto one
generation.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from libs.common.schemas.llm import (
    MinP,
    Penalty,
    RepeatLastN,
    RepeatPenalty,
    Role,
    Temperature,
    TokenLogprob,
    ToolDefinition,
    TopK,
    TopLogprobs,
    TopP,
)


class OllamaOptions(msgspec.Struct, kw_only=True):
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: TopK | None = None
    min_p: MinP | None = None
    num_predict: Annotated[int, msgspec.Meta(ge=-2, le=131_072)] | None = None
    seed: int | None = None
    stop: list[str] | None = None
    num_ctx: int | None = None
    repeat_penalty: RepeatPenalty | None = None
    repeat_last_n: RepeatLastN | None = None
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None


class GenerateRequest(msgspec.Struct, kw_only=True):
    """``POST /generate`` and ``/api/generate`` (the spec's shape is Ollama's, and so is the
    default of streaming)."""

    prompt: str
    model: str | None = None
    system: str | None = None
    stream: bool = True
    raw: bool = False
    format: Literal["", "json"] | dict[str, Any] | None = None  # "": not set, as Ollama reads it
    options: OllamaOptions | None = None
    keep_alive: str | int | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None
    images: list[str] | None = None
    """Ollama's base64 images for a multimodal model: refused (the services read text only)."""
    suffix: str | None = None
    """Ollama's text after the answer, for fill-in-the-middle: refused (not served)."""
    template: str | None = None
    """Ollama's prompt template in place of the model's: refused (the chat template is used)."""
    think: bool | str | None = None
    """Ollama's reasoning trace before the answer: refused when asked (no model here has one)."""
    truncate: bool = True
    """Ollama's: cut a prompt longer than the context (its default) or refuse it. PAS never
    cuts one: it refuses it with a 400 naming the context, as Ollama does with ``false`` (a
    document answered from a silently cut prompt is answered wrongly)."""


class OllamaTimings(msgspec.Struct, kw_only=True):
    """Ollama's counts and durations (nanoseconds), shared by generate and chat answers."""

    total_duration: int = 0
    load_duration: int = 0
    prompt_eval_count: int = 0
    """The whole prompt, its cached start included, as Ollama counts it."""
    prompt_eval_cached_count: int | None = None
    """Of those, read from the prompt cache; absent where the backend does not say."""
    prompt_eval_duration: int = 0
    eval_count: int = 0
    eval_duration: int = 0


class GenerateResponse(OllamaTimings, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    response: str
    done: bool
    done_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    """Asked for: the answer's tokens (on a stream, each line its own)."""


class OllamaFunctionCall(msgspec.Struct, kw_only=True):
    name: str
    arguments: dict[str, Any] = msgspec.field(default_factory=dict)
    """An object (OpenAI's is a JSON text)."""


class OllamaToolCall(msgspec.Struct, kw_only=True, omit_defaults=True):
    function: OllamaFunctionCall
    id: str | None = None
    """Not Ollama's (it matches results to calls by order); taken when a client sends it."""


class OllamaMessage(msgspec.Struct, kw_only=True):
    role: Role
    content: str = ""
    tool_calls: list[OllamaToolCall] | None = None
    """An assistant's message: the calls it made."""
    tool_name: str | None = None
    """A tool's message: the tool whose result it is."""
    tool_call_id: str | None = None
    """A tool's message: the call it answers, when a client sends it (not Ollama's field)."""
    images: list[str] | None = None
    """Ollama's base64 images for a multimodal model: refused (the services read text only)."""


class OllamaChatRequest(msgspec.Struct, kw_only=True):
    messages: Annotated[list[OllamaMessage], msgspec.Meta(min_length=1)]
    model: str | None = None
    stream: bool = True
    format: Literal["", "json"] | dict[str, Any] | None = None  # "": not set, as Ollama reads it
    options: OllamaOptions | None = None
    keep_alive: str | int | None = None
    tools: list[ToolDefinition] | None = None
    think: bool | str | None = None
    """Ollama's reasoning trace before the answer: refused when asked (no model here has one)."""
    truncate: bool = True
    """Ollama's: cut a prompt longer than the context (its default) or refuse it. PAS never
    cuts one: it refuses it with a 400 naming the context, as Ollama does with ``false`` (a
    document answered from a silently cut prompt is answered wrongly)."""
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None


class OllamaChatResponse(OllamaTimings, kw_only=True, omit_defaults=True):
    model: str
    created_at: str
    message: OllamaMessage
    done: bool
    done_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    """Asked for: the answer's tokens (on a stream, each line its own)."""


class OllamaModelDetails(msgspec.Struct, kw_only=True):
    format: str = "gguf"
    family: str = ""
    families: list[str] = msgspec.field(default_factory=list)
    parameter_size: str = ""
    quantization_level: str = ""
    parent_model: str = ""


class OllamaModel(msgspec.Struct, kw_only=True):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: OllamaModelDetails


class OllamaTags(msgspec.Struct, kw_only=True):
    models: list[OllamaModel]


class OllamaLoadedModel(msgspec.Struct, kw_only=True):
    """A model in memory (``/api/ps``): how big, how much of it on a GPU, its context."""

    name: str
    model: str
    size: int
    digest: str
    details: OllamaModelDetails
    expires_at: str
    """When it is unloaded; PAS never unloads one (a date far ahead, as Ollama's keep-alive -1)."""
    size_vram: int
    """Of ``size``, the bytes on a GPU (0: all on the CPU)."""
    context_length: int


class OllamaLoaded(msgspec.Struct, kw_only=True):
    models: list[OllamaLoadedModel]


class OllamaShowRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    name: str | None = None
    verbose: bool | None = None


class OllamaShowResponse(msgspec.Struct, kw_only=True):
    modelfile: str
    parameters: str
    template: str
    details: OllamaModelDetails
    model_info: dict[str, Any]
    capabilities: list[str]
    modified_at: str
