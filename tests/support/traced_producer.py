"""Publish one record the way a traced DAG task would, in a process of its own:
``python -m tests.support.traced_producer BOOTSTRAP TOPIC KEY`` with the value on stdin.

Tracing comes from the OTEL_* variables (libs.common.telemetry); the task's span is the root of
the trace, the PRODUCER span its child, and the record's headers carry the latter's context.
Prints the trace id (hex) once the spans were flushed.
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaProducer
from opentelemetry import trace

from libs.common.kafka.tracing import produce_span
from libs.common.telemetry import configure_tracing, flush_tracing, pas_span


async def publish(bootstrap: str, topic: str, key: bytes, value: bytes) -> str:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        with pas_span("dag task trigger_workflow"):
            trace_id = format(trace.get_current_span().get_span_context().trace_id, "032x")
            with produce_span(topic, key=key) as headers:
                await producer.send_and_wait(topic, key=key, value=value, headers=headers)
    finally:
        await producer.stop()
    return trace_id


def main() -> None:
    bootstrap, topic, key = sys.argv[1:4]
    if not configure_tracing("dag_task"):
        sys.exit("tracing is off: set OTEL_EXPORTER_OTLP_ENDPOINT")
    trace_id = asyncio.run(publish(bootstrap, topic, key.encode(), sys.stdin.buffer.read()))
    flush_tracing()
    print(trace_id)


if __name__ == "__main__":
    main()
