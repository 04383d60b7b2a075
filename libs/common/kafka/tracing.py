"""W3C trace context across the broker: into a record's headers on produce, out on consume.

A producer wraps each send in :func:`produce_span` and sends the headers it yields (the
record's own headers with ``traceparent``/``tracestate`` of the PRODUCER span put in); a
consumer wraps its handling of a record in :func:`consume_span`, whose CONSUMER span continues
the trace the headers carry. Attributes follow the messaging semantic conventions
(``messaging.system`` = ``kafka``, destination, partition, offset, consumer group).

A worker whose slot hands a record's publication over to be awaited later (the shared work
loop) starts the span with :func:`start_consume_span` and ends it with :func:`finish_in`, so
that the publication's PRODUCER span is its child. A consumer that handles a batch as a whole
starts one :func:`start_batch_span`, which LINKS to every record's context instead of taking
one of them as its parent (what the conventions ask of batch processing: the records come
from many traces).

With tracing off (no exporter configured: ``tracing_enabled()`` is false) each helper returns
after that one check: no header is parsed or injected, no span is made (the start functions
return the API's ``INVALID_SPAN``, which :func:`finish_in` passes by); a record's own headers go
through as they came.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Final, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind

from libs.common.telemetry import tracing_enabled

T = TypeVar("T")

Headers = list[tuple[str, bytes]]

MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_DESTINATION_PARTITION_ID: Final = "messaging.destination.partition.id"
MESSAGING_KAFKA_OFFSET: Final = "messaging.kafka.offset"
MESSAGING_KAFKA_MESSAGE_KEY: Final = "messaging.kafka.message.key"
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"
MESSAGING_BATCH_MESSAGE_COUNT: Final = "messaging.batch.message_count"

_tracer = trace.get_tracer("pas.kafka")


def inject_headers(headers: Iterable[tuple[str, bytes]] = ()) -> Headers:
    """``headers`` with the current trace context in them (a header of the same name the
    propagator sets is replaced, never doubled); as they are when tracing is off."""
    if not tracing_enabled():
        return list(headers)
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if not carrier:
        return list(headers)
    names = {name.lower() for name in carrier}
    kept = [(name, value) for name, value in headers if name.lower() not in names]
    return kept + [(name, value.encode()) for name, value in carrier.items()]


def extract_context(
    headers: Iterable[tuple[str, bytes | None]] | Mapping[str, str] | None,
) -> otel_context.Context:
    """The trace context a record's headers carry (an empty one when they carry none).

    Takes aiokafka's header list or a mapping of text values (as a stored run keeps them)."""
    if headers is None:
        return propagate.extract({})
    if isinstance(headers, Mapping):
        return propagate.extract({name.lower(): value for name, value in headers.items()})
    carrier = {
        name.lower(): value.decode("latin-1") for name, value in headers if value is not None
    }
    return propagate.extract(carrier)


def _key_attribute(key: bytes | str | None) -> dict[str, str]:
    if key is None:
        return {}
    text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
    return {MESSAGING_KAFKA_MESSAGE_KEY: text}


@contextmanager
def produce_span(
    topic: str,
    *,
    key: bytes | str | None = None,
    headers: Iterable[tuple[str, bytes]] = (),
    context: otel_context.Context | None = None,
) -> Iterator[Headers]:
    """A PRODUCER span ``send <topic>`` around one publish; yields the headers to send with
    the record: ``headers`` plus this span's context, so the consumer's span is its child.
    ``context``: the span's parent when not the current span (one extracted from headers)."""
    if not tracing_enabled():
        yield list(headers)
        return
    with _tracer.start_as_current_span(
        f"send {topic}",
        context=context,
        kind=SpanKind.PRODUCER,
        attributes={
            MESSAGING_SYSTEM: "kafka",
            MESSAGING_DESTINATION_NAME: topic,
            MESSAGING_OPERATION_TYPE: "send",
            MESSAGING_OPERATION_NAME: "send",
            **_key_attribute(key),
        },
    ):
        yield inject_headers(headers)


@contextmanager
def consume_span(record: Any, *, group: str | None = None) -> Iterator[Span]:
    """A CONSUMER span ``process <topic>`` around the handling of one record, child of the
    producer's span when the record's headers carry its context; current inside the block.

    ``record`` is an aiokafka ``ConsumerRecord`` (``topic``, ``partition``, ``offset``,
    ``key``, ``headers`` are read)."""
    if not tracing_enabled():
        yield INVALID_SPAN
        return
    with trace.use_span(start_consume_span(record, group=group), end_on_exit=True) as span:
        yield span


def start_consume_span(record: Any, *, group: str | None = None) -> Span:
    """The same span, started but not current: for handling that goes on past the block that
    began it (make it current with ``trace.use_span``; end it with :func:`finish_in`)."""
    if not tracing_enabled():
        return INVALID_SPAN
    topic = str(record.topic)
    attributes: dict[str, str | int] = {
        MESSAGING_SYSTEM: "kafka",
        MESSAGING_DESTINATION_NAME: topic,
        MESSAGING_DESTINATION_PARTITION_ID: str(record.partition),
        MESSAGING_KAFKA_OFFSET: int(record.offset),
        MESSAGING_OPERATION_TYPE: "process",
        MESSAGING_OPERATION_NAME: "process",
        **_key_attribute(record.key),
    }
    if group:
        attributes[MESSAGING_CONSUMER_GROUP_NAME] = group
    return _tracer.start_span(
        f"process {topic}",
        context=extract_context(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    )


def start_batch_span(records: Sequence[Any], *, group: str | None = None) -> Span:
    """A CONSUMER span for a batch of records handled as a whole, started but not current.

    As the messaging conventions have it for batch processing: a root span (the records come
    from as many traces as they have producers, none of which is the batch's parent) with a
    link to each record's creation context (the link names the record's topic, partition and
    offset), named ``process <topic>`` when all come from one topic, else ``process``. The SDK
    keeps the first 128 links (``OTEL_SPAN_LINK_COUNT_LIMIT``)."""
    if not tracing_enabled():
        return INVALID_SPAN
    links: list[Link] = []
    topics: set[str] = set()
    for record in records:
        topics.add(str(record.topic))
        linked = trace.get_current_span(extract_context(record.headers)).get_span_context()
        if linked.is_valid:
            links.append(
                Link(
                    linked,
                    {
                        MESSAGING_DESTINATION_NAME: str(record.topic),
                        MESSAGING_DESTINATION_PARTITION_ID: str(record.partition),
                        MESSAGING_KAFKA_OFFSET: int(record.offset),
                    },
                )
            )
    attributes: dict[str, str | int] = {
        MESSAGING_SYSTEM: "kafka",
        MESSAGING_OPERATION_TYPE: "process",
        MESSAGING_OPERATION_NAME: "process",
        MESSAGING_BATCH_MESSAGE_COUNT: len(records),
    }
    if len(topics) == 1:
        attributes[MESSAGING_DESTINATION_NAME] = next(iter(topics))
    if group:
        attributes[MESSAGING_CONSUMER_GROUP_NAME] = group
    return _tracer.start_span(
        f"process {next(iter(topics))}" if len(topics) == 1 else "process",
        # An empty context: the batch is a root, whatever span happens to be current.
        context=otel_context.Context(),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        links=links,
    )


def current(span: Span) -> AbstractContextManager[object]:
    """``span`` current for a block, as ``trace.use_span``; nothing to enter with tracing off
    (a consumer calls this a record, and ``use_span`` costs microseconds even for
    ``INVALID_SPAN``). A span sampled out is still made current: its children follow its
    sampling decision."""
    if span is INVALID_SPAN:  # tracing off
        return nullcontext()
    return trace.use_span(span)


def finish_in(span: Span, work: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """``work``, run with ``span`` current (its sends become its children), then the span
    ended; an exception leaving ``work`` is recorded on it and goes on. With tracing off,
    ``work`` itself: no coroutine around it to resume on every record."""
    if span is INVALID_SPAN:  # tracing off
        return work
    return _finished_in(span, work)


async def _finished_in(span: Span, work: Coroutine[Any, Any, T]) -> T:
    with trace.use_span(span, end_on_exit=True):
        return await work
