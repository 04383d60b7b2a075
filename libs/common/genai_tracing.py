"""Spans for model calls, following OpenTelemetry's GenAI semantic conventions.

One span per call, named ``{operation} {model}`` (``chat smollm2-135m``; ``chat`` when the
request names no model), of kind CLIENT when
PAS calls a model somewhere else (the router, the runner, the processor) and INTERNAL when the
model runs in this process (the LLM services). Attributes, as the conventions name them:
``gen_ai.operation.name``, ``gen_ai.provider.name`` (the successor of ``gen_ai.system``),
``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` and
``gen_ai.usage.output_tokens``; what a call cost goes in ``pas.cost_usd``, which the
conventions do not cover. With tracing off the span is the API's non-recording one and
``record_usage`` returns at its first line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
ERROR_TYPE: Final = "error.type"
PAS_COST_USD: Final = "pas.cost_usd"

# Well-known operation names of the conventions.
CHAT: Final = "chat"
TEXT_COMPLETION: Final = "text_completion"
EMBEDDINGS: Final = "embeddings"

_tracer = trace.get_tracer("pas.genai")


def _attributes(
    operation: str,
    model: str,
    provider: str,
    attributes: Mapping[str, str | int | float | bool] | None,
) -> dict[str, str | int | float | bool]:
    found: dict[str, str | int | float | bool] = {
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


@contextmanager
def genai_span(
    operation: str,
    *,
    model: str,
    provider: str,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A span around one model call; an exception leaving it marks the span failed (with
    ``error.type``) and goes on. Token counts are set with :func:`record_usage`."""
    with _tracer.start_as_current_span(
        _name(operation, model),
        kind=kind,
        attributes=_attributes(operation, model, provider, attributes),
    ) as span:
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            raise


def start_genai_span(
    operation: str,
    *,
    model: str,
    provider: str,
    kind: SpanKind = SpanKind.CLIENT,
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Span:
    """The same span, started but not made current, for a call that outlives the block that
    began it (a stream): the caller ends it (``span.end()``) when the last event went out."""
    return _tracer.start_span(
        _name(operation, model),
        kind=kind,
        attributes=_attributes(operation, model, provider, attributes),
    )


def record_error(span: Span, exc: BaseException) -> None:
    """Mark a call's span failed (for spans not ended by a ``with`` block)."""
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
        span.record_exception(exc)
        span.set_status(trace.StatusCode.ERROR, str(exc))


CANCELLED: Final = "cancelled"
"""``error.type`` of a call given up before its end (a stream its client left)."""


def record_cancelled(span: Span, why: str) -> None:
    """Mark a call's span as given up before its end (for spans not ended by a ``with``)."""
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, CANCELLED)
        span.set_status(trace.StatusCode.ERROR, why)


def record_usage(
    span: Span,
    *,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    response_model: str | None = None,
    cost_usd: float | None = None,
) -> None:
    """What the call used, on its span (only the values known)."""
    if not span.is_recording():
        return
    used: dict[str, str | int | float] = {}
    if input_tokens is not None:
        used[GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
    if output_tokens is not None:
        used[GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
    if response_model:
        used[GEN_AI_RESPONSE_MODEL] = response_model
    if cost_usd is not None:
        used[PAS_COST_USD] = cost_usd
    span.set_attributes(used)  # one lock and one pass, not one per attribute
