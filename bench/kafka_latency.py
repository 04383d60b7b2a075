"""How long one record, one document or one workflow event takes through Kafka on the embedded
broker when they come one at a time: latency, where the other Kafka benches measure throughput.

(a) A record produced to a topic of six partitions (PAS's topics have three or six) until a
    consumer of every partition has it, with aiokafka's default fetch wait (500 ms) and with
    PAS's (``KAFKA_FETCH_MAX_WAIT_MS`` in ``libs/common/constants.py``). A real Kafka broker
    answers a waiting fetch as soon as records arrive; the embedded Tansu broker answers a fetch
    of several partitions only when it looks again, so there the wait bounds the hop.
(b) A document (a summary to make) through the Kafka LLM processor, answered by an instant
    OpenAI-compatible responder, until its result is read from the output topic (as ``pas
    send`` reads it), next to the same LLM call made straight to the responder.
(c) A ``workflow.triggered`` event through the LangGraph runner's Kafka bridge until its
    ``workflow.completed`` is read from ``workflow-results`` (as a DAG or ``pas trigger`` reads
    it, with PAS's fetch wait), next to the same run started and awaited in process (the five
    no-op steps of ``bench.langgraph_runner``, SQLite checkpoints): what the two hops add.

The records, documents and events are spaced by uneven pauses, so that they do not fall into
step with the consumers' fetches. Run: ``.venv/bin/python -m bench.kafka_latency [--count 40]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from bench.bridge_throughput import bridged_runner, events, runner_settings
from bench.langgraph_runner import through_runner
from bench.processor_throughput import (
    Results,
    fresh_topics,
    processor_settings,
    running_processor,
    serve_responder,
    summaries,
)
from bench.scratch import broker_in_scratch
from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.topics import ensure_topics
from libs.common.kit.logging import configure_logging
from services.kafka_llm_processor.llm_client import LLMClient
from services.kafka_llm_processor.metrics import ProcessorMetrics
from services.kafka_llm_processor.prompts import answer_schema, messages_for
from services.kafka_llm_processor.settings import ProcessorSettings

AIOKAFKA_DEFAULT_WAIT_MS = 500


def pause(n: int) -> float:
    """Uneven pauses between 10 and 260 ms, the same in every phase."""
    return 0.010 + (n * 0.037) % 0.25


async def timed(count: int, once: Callable[[int], Awaitable[None]]) -> list[float]:
    """Milliseconds each of ``count`` calls took, one at a time, after a first one untimed."""
    await once(-1)
    taken = []
    for n in range(count):
        await asyncio.sleep(pause(n))
        started = time.perf_counter()
        await once(n)
        taken.append((time.perf_counter() - started) * 1000)
    return taken


async def record_latency(bootstrap: str, count: int, fetch_max_wait_ms: int) -> list[float]:
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: 6})
    async with (
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer,
        Results(bootstrap, topic, from_end=True, fetch_max_wait_ms=fetch_max_wait_ms) as records,
    ):

        async def once(n: int) -> None:
            await producer.send_and_wait(topic, key=str(n).encode(), value=b"x")
            await records.consumer.getone()

        return await timed(count, once)


async def processor_latency(bootstrap: str, llm_url: str, count: int) -> list[float]:
    topics = await fresh_topics(bootstrap)
    source, sink, _ = topics
    settings = processor_settings(bootstrap, topics, llm_url)
    docs = summaries(count + 1)
    async with (
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer,
        running_processor(settings, ProcessorMetrics()),
        Results(bootstrap, sink, from_end=True) as results,
    ):

        async def once(n: int) -> None:
            doc = docs[n + 1]
            value = msgspec.json.encode(doc)
            await producer.send_and_wait(source, key=doc.doc_id.encode(), value=value)
            await results.consumer.getone()

        return await timed(count, once)


async def direct_latency(llm_url: str, count: int) -> list[float]:
    """The processor's request for each document (messages, schema, ``max_tokens``)."""
    docs = summaries(count + 1)
    llm = LLMClient(llm_url, model=None, timeout_s=120)
    max_tokens = ProcessorSettings().max_tokens

    async def once(n: int) -> None:
        doc = docs[n + 1]
        await llm.ask(messages_for(doc), max_tokens=max_tokens, json_schema=answer_schema(doc))

    try:
        return await timed(count, once)
    finally:
        await llm.aclose()


async def bridge_latency(bootstrap: str, folder: Path, count: int) -> list[float]:
    async with (
        AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all") as producer,
        bridged_runner(bootstrap, folder, 16) as (source, sink),
        Results(bootstrap, sink, from_end=True) as results,
    ):

        async def once(_: int) -> None:
            ((key, value),) = events(1)
            await producer.send_and_wait(source, key=key, value=value)
            await results.consumer.getone()

        return await timed(count, once)


async def in_process_latency(folder: Path, count: int) -> list[float]:
    async with AsyncExitStack() as stack:
        run_once = await through_runner(stack, runner_settings(folder, 16))
        return await timed(count, lambda _: run_once())


def summary(taken: list[float]) -> str:
    return f"p50 {statistics.median(taken):6.1f} ms, max {max(taken):6.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=40, help="records, events and runs timed")
    args = parser.parse_args()
    configure_logging("WARNING")
    with broker_in_scratch() as (work, broker):
        bootstrap = broker.bootstrap_servers
        for wait_ms in (AIOKAFKA_DEFAULT_WAIT_MS, KAFKA_FETCH_MAX_WAIT_MS):
            taken = asyncio.run(record_latency(bootstrap, args.count, wait_ms))
            print(f"(a) a record, fetch wait {wait_ms:3d} ms: {summary(taken)}", flush=True)
        with serve_responder(0.0, work) as instant:
            llm_url = f"{instant.url}/v1"
            processed = asyncio.run(processor_latency(bootstrap, llm_url, args.count))
            called = asyncio.run(direct_latency(llm_url, args.count))
        print(f"(b) a document through the processor to its result: {summary(processed)}")
        print(f"    the same LLM call made directly:                 {summary(called)}")
        bridged = asyncio.run(bridge_latency(bootstrap, work / "bridge", args.count))
        alone = asyncio.run(in_process_latency(work / "runs", args.count))
    print(f"(c) an event through the runner's Kafka bridge to its outcome: {summary(bridged)}")
    print(f"    the same run started and awaited in process:          {summary(alone)}")


if __name__ == "__main__":
    main()
