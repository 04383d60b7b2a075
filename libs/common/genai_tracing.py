"""Spans for model calls, following OpenTelemetry's GenAI semantic conventions.

One span per call, named ``{operation} {model}`` (``chat smollm2-135m``; ``chat`` when the
request names no model), of kind CLIENT when PAS calls a model somewhere else (the router, the
runner, the processor) and INTERNAL when the model runs in this process (the LLM services).
Attributes, as the conventions name them: ``gen_ai.operation.name``, ``gen_ai.provider.name``
(the successor of ``gen_ai.system``), ``gen_ai.request.model``, ``gen_ai.response.model``,
``gen_ai.usage.input_tokens`` and ``gen_ai.usage.output_tokens``; what a call cost goes in
``pas.cost_usd``, which the conventions do not cover. With tracing off the span is the API's
non-recording one and nothing is noted.

A call's attributes are noted on a :class:`ModelCallSpan` while it runs and set on the SDK span
in one pass when it ends, and a call made in a ``with`` block (:func:`genai_span`) does that on
the event loop's next step, once the task that made the call has gone on: a request's answer
has been sent by then. Why: the SDK checks every attribute under the span's lock (about 1 us
each, a dozen a call), which on the router's hop was about a third of what tracing cost a
request at p50 (docs/benchmarks.md, tracing section). So the spans' samplers see no attributes
at start; none of the standard samplers PAS configures reads them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
"""Of the input tokens, those taken from a prompt cache (counted in the input tokens too)."""
GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
"""Of the input tokens, those written to a provider's prompt cache (counted in them too)."""
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
ERROR_TYPE: Final = "error.type"
PAS_COST_USD: Final = "pas.cost_usd"

# Well-known operation names of the conventions.
CHAT: Final = "chat"
TEXT_COMPLETION: Final = "text_completion"
EMBEDDINGS: Final = "embeddings"

_tracer = trace.get_tracer("pas.genai")


def requested_generation(
    *,
    max_tokens: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop: Sequence[str] | None = None,
) -> dict[str, AttributeValue]:
    """The conventions' request attributes of a call, for those it was made with (a run's
    version may set each one: its trace shows what the call asked)."""
    asked: dict[str, AttributeValue] = {}
    for name, value in (
        (GEN_AI_REQUEST_MAX_TOKENS, max_tokens),
        (GEN_AI_REQUEST_TEMPERATURE, temperature),
        (GEN_AI_REQUEST_TOP_P, top_p),
        (GEN_AI_REQUEST_SEED, seed),
    ):
        if value is not None:
            asked[name] = value
    if stop:
        asked[GEN_AI_REQUEST_STOP_SEQUENCES] = list(stop)
    return asked


class ModelCallSpan:
    """One model call's span and the attributes noted on it so far, which :meth:`end` sets in
    one pass. With tracing off: the API's non-recording span, and nothing is kept."""

    __slots__ = ("_attributes", "span")

    def __init__(self, span: Span, attributes: dict[str, AttributeValue]) -> None:
        self.span = span
        self._attributes = attributes

    def is_recording(self) -> bool:
        return self.span.is_recording()

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        """Note attributes (a later value of a key wins), set on the span when it ends."""
        if self.span.is_recording():
            self._attributes.update(attributes)

    def end(self, end_time: int | None = None) -> None:
        """Set what was noted and end the span (``end_time`` in ns since the epoch: now if
        not given)."""
        if self.span.is_recording():
            self.span.set_attributes(self._attributes)
        self.span.end(end_time)

    def end_soon(self) -> None:
        """End the span now as the trace sees it, but do the SDK's work for it (attributes,
        span processors) on the event loop's next step: after the running task's next
        suspension, which for a request handler is after its answer went out."""
        if not self.span.is_recording():
            return
        ended = time.time_ns()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: nothing to wait for
            self.end(ended)
            return
        loop.call_soon(self.end, ended)


_current_call: ContextVar[ModelCallSpan | None] = ContextVar("pas_model_call", default=None)


def current_model_call() -> ModelCallSpan | None:
    """The recording model call whose block runs here, if any (where an HTTP client notes the
    server it called)."""
    return _current_call.get()


def _attributes(
    operation: str,
    model: str,
    provider: str,
    attributes: Mapping[str, AttributeValue] | None,
) -> dict[str, AttributeValue]:
    found: dict[str, AttributeValue] = {
        GEN_AI_OPERATION_NAME: operation,
        GEN_AI_PROVIDER_NAME: provider,
        **(attributes or {}),
    }
    if model:
        found[GEN_AI_REQUEST_MODEL] = model
    return found


def _name(operation: str, model: str) -> str:
    # A call that leaves the model to the server (no ``model`` in the request) is named by
    # its operation alone, as the conventions say.
    return f"{operation} {model}" if model else operation


def start_genai_span(
    operation: str,
    *,
    model: str,
    provider: str,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> ModelCallSpan:
    """A model call's span, started but not made current; the caller ends it (``end()``),
    for a call that outlives the block that began it (a stream), or hands it to
    :func:`model_call`."""
    span = _tracer.start_span(_name(operation, model), kind=kind)
    if not span.is_recording():
        return ModelCallSpan(span, {})
    return ModelCallSpan(span, _attributes(operation, model, provider, attributes))


@contextmanager
def current_call(call: ModelCallSpan) -> Iterator[ModelCallSpan]:
    """``call`` current inside the block, not ended when it leaves: the parent of the spans
    below it, and where :func:`current_model_call` finds it (an HTTP client notes on it the
    server it called). An exception leaving the block marks the span failed (``error.type``,
    the exception as an event, status ERROR) and goes on."""
    if not call.is_recording():
        yield call
        return
    token = _current_call.set(call)
    try:
        with trace.use_span(call.span, end_on_exit=False):
            yield call
    except BaseException as exc:
        call.set_attributes({ERROR_TYPE: type(exc).__qualname__})
        raise
    finally:
        _current_call.reset(token)


@contextmanager
def model_call(call: ModelCallSpan) -> Iterator[ModelCallSpan]:
    """``call`` current inside the block (:func:`current_call`), and ended when it leaves
    (:meth:`ModelCallSpan.end_soon`)."""
    try:
        with current_call(call):
            yield call
    finally:
        call.end_soon()


@contextmanager
def genai_span(
    operation: str,
    *,
    model: str,
    provider: str,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[ModelCallSpan]:
    """A span around one model call, current inside the block (see :func:`model_call`).
    Token counts are noted with :func:`record_usage`."""
    call = start_genai_span(
        operation, model=model, provider=provider, kind=kind, attributes=attributes
    )
    with model_call(call):
        yield call


def record_error(call: ModelCallSpan, exc: BaseException) -> None:
    """Mark a call's span failed (for spans not ended by a ``with`` block)."""
    if call.is_recording():
        call.set_attributes({ERROR_TYPE: type(exc).__qualname__})
        call.span.record_exception(exc)
        call.span.set_status(trace.StatusCode.ERROR, str(exc))


CANCELLED: Final = "cancelled"
"""``error.type`` of a call given up before its end (a stream its client left)."""


def record_cancelled(call: ModelCallSpan, why: str) -> None:
    """Mark a call's span as given up before its end (for spans not ended by a ``with``)."""
    if call.is_recording():
        call.set_attributes({ERROR_TYPE: CANCELLED})
        call.span.set_status(trace.StatusCode.ERROR, why)


def record_usage(
    call: ModelCallSpan,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    cached_input_tokens: int | None = None,
    cache_written_input_tokens: int | None = None,
    response_model: str | None = None,
    cost_usd: float | None = None,
) -> None:
    """What the call used, noted on its span (only the values known)."""
    if not call.is_recording():
        return
    used: dict[str, AttributeValue] = {}
    if input_tokens is not None:
        used[GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        used[GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if cached_input_tokens is not None:
        used[GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cached_input_tokens
    if cache_written_input_tokens is not None:
        used[GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_written_input_tokens
    if response_model:
        used[GEN_AI_RESPONSE_MODEL] = response_model
    if cost_usd is not None:
        used[PAS_COST_USD] = cost_usd
    call.set_attributes(used)
