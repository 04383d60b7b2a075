"""W3C trace context across the broker: into a record's headers on produce, out on consume.

A producer wraps each send in :func:`produce_span` and sends the headers it yields (the
record's own headers with ``traceparent``/``tracestate`` of the PRODUCER span put in); a
consumer wraps its handling of a record in :func:`consume_span`, whose CONSUMER span continues
the trace the headers carry. Attributes follow the messaging semantic conventions
(``messaging.system`` = ``kafka``, destination, partition, offset, consumer group). With tracing
off the propagator injects nothing and the spans are non-recording.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

Headers = list[tuple[str, bytes]]

MESSAGING_SYSTEM: Final = "messaging.system"
MESSAGING_DESTINATION_NAME: Final = "messaging.destination.name"
MESSAGING_DESTINATION_PARTITION_ID: Final = "messaging.destination.partition.id"
MESSAGING_KAFKA_OFFSET: Final = "messaging.kafka.offset"
MESSAGING_KAFKA_MESSAGE_KEY: Final = "messaging.kafka.message.key"
MESSAGING_CONSUMER_GROUP_NAME: Final = "messaging.consumer.group.name"
MESSAGING_OPERATION_TYPE: Final = "messaging.operation.type"
MESSAGING_OPERATION_NAME: Final = "messaging.operation.name"

_tracer = trace.get_tracer("pas.kafka")


def inject_headers(headers: Iterable[tuple[str, bytes]] = ()) -> Headers:
    """``headers`` with the current trace context in them (a header of the same name the
    propagator sets is replaced, never doubled)."""
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
    producer's span when the record's headers carry its context.

    ``record`` is an aiokafka ``ConsumerRecord`` (``topic``, ``partition``, ``offset``,
    ``key``, ``headers`` are read)."""
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
    with _tracer.start_as_current_span(
        f"process {topic}",
        context=extract_context(record.headers),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield span
