"""Embeddings on the wire: OpenAI's ``POST /v1/embeddings`` and Ollama's ``POST /api/embed``
(and its older ``/api/embeddings``), as the LLM services serve them (and their ``openai`` and
``ollama`` backends ask for them)."""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from libs.common.schemas.ollama import OllamaOptions

MAX_INPUTS: Final = 2048
"""The most texts one request may embed (OpenAI's limit)."""

Text = Annotated[str, msgspec.Meta(min_length=1)]
Inputs = Text | Annotated[list[Text], msgspec.Meta(min_length=1, max_length=MAX_INPUTS)]


def texts_of(inputs: str | list[str]) -> list[str]:
    """A request's ``input`` as the list of texts it is (one text is a list of one)."""
    return [inputs] if isinstance(inputs, str) else inputs


class EmbeddingRequest(msgspec.Struct, kw_only=True):
    input: Inputs
    """A text, or a list of texts (none empty); token arrays are not taken."""
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    """``base64``: each vector as its little-endian float32 bytes (the ``openai`` client's
    default)."""
    dimensions: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Refused with a 400: vectors come at the model's own size."""
    user: str | None = None


class Embedding(msgspec.Struct, kw_only=True):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(msgspec.Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(msgspec.Struct, kw_only=True):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


class OllamaEmbedRequest(msgspec.Struct, kw_only=True):
    input: Inputs
    model: str | None = None
    truncate: bool = True
    """Cut a text longer than the context to fit it (Ollama's default), else refuse it."""
    options: OllamaOptions | None = None
    keep_alive: str | int | None = None


class OllamaEmbedResponse(msgspec.Struct, kw_only=True):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class OllamaEmbeddingsRequest(msgspec.Struct, kw_only=True):
    """Ollama's older ``POST /api/embeddings``: one text, never truncated."""

    prompt: Text
    model: str | None = None
    options: OllamaOptions | None = None
    keep_alive: str | int | None = None


class OllamaEmbeddingsResponse(msgspec.Struct, kw_only=True):
    embedding: list[float]
