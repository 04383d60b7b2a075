"""What every model backend offers the LLM services: complete, stream, probe."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any, Final, Literal, Protocol

import msgspec
from prometheus_client.registry import Collector

from libs.common.schemas.llm import TokenLogprob

FinishReason = Literal["stop", "length"]


class Turn(msgspec.Struct, kw_only=True):
    role: str
    content: str


class Generation(msgspec.Struct, kw_only=True):
    """One request to a model, whichever API it came in through."""

    messages: list[Turn]
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    """0 or less: every token."""
    min_p: float | None = None
    max_tokens: int | None = None
    stop: list[str] = msgspec.field(default_factory=list)
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    json_mode: bool = False
    # Penalties on repeating the answer's own tokens; None: the backend's default (none).
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    """-1: the whole context; 0: no penalty."""
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # llama.cpp's DRY: lowers what would extend a loop; None: the backend's default (off).
    dry_multiplier: float | None = None
    dry_base: float | None = None
    dry_allowed_length: int | None = None
    dry_penalty_last_n: int | None = None
    logprobs: int | None = None
    """None: no log-probabilities; N: each answer token's, with the N likeliest tokens at its
    place (OpenAI's ``logprobs`` and ``top_logprobs``)."""
    logit_bias: dict[int, float] | None = None
    """Added to these token ids' logits before anything else picks (OpenAI's ``logit_bias``)."""


PENALTY_FIELDS: Final = ("repeat_penalty", "repeat_last_n", "frequency_penalty", "presence_penalty")
"""The penalty fields of a Generation, named as Ollama's options and llama.cpp server name them."""
DRY_FIELDS: Final = ("dry_multiplier", "dry_base", "dry_allowed_length", "dry_penalty_last_n")
"""DRY's fields of a Generation, named as llama.cpp server names them (Ollama has no DRY)."""


class Completion(msgspec.Struct, kw_only=True):
    """A finished answer with its token counts and durations (nanoseconds)."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    prompt_eval_ns: int = 0
    eval_ns: int = 0
    total_ns: int = 0
    logprobs: list[TokenLogprob] | None = None
    """Asked for (``Generation.logprobs``): one for each token of ``text``."""
    cached_tokens: int | None = None
    """The prompt's first tokens taken from a cache instead of read; None: not known."""


class TextDelta(msgspec.Struct, kw_only=True):
    text: str
    logprobs: list[TokenLogprob] | None = None
    """Asked for: those of the tokens this text holds (a backend may give them with the
    ``Completion`` instead)."""


StreamEvent = TextDelta | Completion


class ModelDescription(msgspec.Struct, kw_only=True):
    name: str
    family: str = ""
    parameter_size: str = ""
    quantization: str = ""
    context_length: int | None = None
    size_bytes: int = 0
    format: str = "gguf"


class BackendHealth(msgspec.Struct, kw_only=True):
    answers: bool
    detail: str


class Embeddings(msgspec.Struct, kw_only=True):
    """Texts' vectors, in the texts' order, and the tokens read to make them."""

    vectors: list[list[float]]
    prompt_tokens: int
    total_ns: int = 0


class ChatBackend(Protocol):
    """One model behind one service. Errors are ``BackendUnavailable``, ``BackendTimeout`` or
    ``InvalidRequest`` (libs.common.errors), each with the reason."""

    kind: str
    location: str
    collectors: Sequence[Collector]
    """Prometheus collectors of the backend's own (the embedded model's batching)."""

    @property
    def model(self) -> ModelDescription: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def complete(self, generation: Generation) -> Completion: ...

    def stream(self, generation: Generation) -> AsyncGenerator[StreamEvent, None]:
        """Text deltas, then one final ``Completion`` holding the whole answer."""
        ...

    async def probe(self) -> BackendHealth: ...

    async def embed(self, texts: list[str], *, truncate: bool) -> Embeddings:
        """A vector for each text; ``truncate``: a text longer than the model's context is cut
        to fit it, else refused (``InvalidRequest`` naming it)."""
        ...


class ChoiceScorer(Protocol):
    """Backends that can read the model's own probabilities of given answers."""

    async def score_choices(self, messages: list[Turn], choices: list[str]) -> list[float]:
        """Log-probability of each choice as the assistant's whole answer."""
        ...


def logprobs_if_asked(
    generation: Generation, given: Sequence[TokenLogprob] | None
) -> list[TokenLogprob] | None:
    """A remote server's log-probabilities for the answer, when they were asked for; None when
    it gave none (Ollama before 0.12.11, servers that ignore the field)."""
    return list(given) if generation.logprobs is not None and given else None


def logprobs_after(completion: Completion, sent: int) -> list[TokenLogprob] | None:
    """The answer's log-probabilities past the first ``sent`` (those its stream's deltas
    carried); None when none are left."""
    return (completion.logprobs or [])[sent:] or None


async def collect(events: AsyncIterator[StreamEvent]) -> Completion:
    """Drain a stream to its final ``Completion``."""
    final: Completion | None = None
    async for event in events:
        if isinstance(event, Completion):
            final = event
    if final is None:
        raise RuntimeError("the backend's stream ended without a final completion")
    return final
