"""Documents per second through the Kafka LLM processor, each next to its baseline.

(a) ceiling: the processor with an instant OpenAI-compatible responder, versus a bare aiokafka
    consume-and-produce loop on the same broker (no LLM at all) and versus the same LLM calls
    made straight to the responder at the same concurrency (no Kafka at all);
(b) embedded model: the processor against the Llama 3.1 8B wrapper (SmolLM2 in llama.cpp),
    versus calling that service directly at the same concurrency without Kafka;
(c) a backend that batches (every call takes 200 ms, calls overlap): the processor at
    concurrency 16 versus the spec's one-document-at-a-time design (concurrency 1).

The documents wait on the input topic before the processor (or the bare loop) starts, and a rate
runs from its partitions' assignment (a join takes seconds on any broker and is not throughput)
to the last result the broker acknowledged: the bench's own producer and readers stay out of the
measured process, as the documents' producers and the results' readers are other processes in a
deployment (until 2026-12-05 the documents were sent from this process inside the measured time,
which the calls without Kafka did not pay). All on the embedded Tansu broker, every phase on
uvloop, the event loop uvicorn runs the services on (until 2026-12-05 on asyncio's own loop,
which no deployed processor uses; ``--loop asyncio`` measures that). The bench tunes
the garbage collector once set up, as every PAS service does at startup
(``libs/common/kit/heap.py``), so that all three phases run with it as a service has it.
Run: ``.venv/bin/python -m bench.processor_throughput [--parts abc] [--documents 16000]
[--rounds 1] [--loop uvloop]`` (``--parts a``: the ceiling alone, a minute; ``--documents``:
how many in each phase of (a); ``--rounds``: (a) that many times, with the median ratios).
The module passes 400 lines because its three parts share one broker, its documents, its
responders and its report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import uvloop
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from prometheus_client import Counter

from bench.process_stats import cpu_seconds
from bench.scratch import broker_in_scratch
from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.reading import assign_settled, partitions_of
from libs.common.kafka.topics import ensure_topics
from libs.common.kit.heap import StartupHeap
from libs.common.kit.logging import configure_logging
from libs.common.schemas.documents import (
    FinancialDocument,
    processor_run_id,
    processor_workflow_id,
)
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from services.kafka_llm_processor.llm_client import LLMClient
from services.kafka_llm_processor.metrics import ProcessorMetrics
from services.kafka_llm_processor.processor import DocumentProcessor
from services.kafka_llm_processor.prompts import answer_schema, messages_for
from services.kafka_llm_processor.send_samples import documents, send
from services.kafka_llm_processor.settings import ProcessorSettings
from tests.support.processes import ServiceProcess, free_port


class Results:
    """Counts the records arriving on a topic; reads every partition from the start (or from
    its end) without a group, so it is ready at once (no join to wait for)."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        from_end: bool = False,
        fetch_max_wait_ms: int = KAFKA_FETCH_MAX_WAIT_MS,
    ) -> None:
        # A PAS reader's fetch wait by default: the embedded broker answers a waiting fetch of
        # several partitions only when it looks again, up to this long after.
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            group_id=None,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )
        self._topic = topic
        self._from_end = from_end

    async def __aenter__(self) -> Results:
        await self.consumer.start()
        await assign_settled(self.consumer, partitions_of(self.consumer, self._topic))
        if self._from_end:
            await self.consumer.seek_to_end()
        else:
            await self.consumer.seek_to_beginning()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def wait_for(self, want: int) -> None:
        seen = 0
        while seen < want:
            for records in (await self.consumer.getmany(timeout_ms=200)).values():
                seen += len(records)


async def _until_assigned(assigned: Callable[[], set[TopicPartition]], topic: str) -> None:
    """Group joins take seconds on any broker; the rate is measured after, in steady state."""
    while not any(tp.topic == topic for tp in assigned()):  # noqa: ASYNC110 (state, no event)
        await asyncio.sleep(0.005)


class Window:
    """The timed part of a phase: how long it lasted, and the CPU each process in ``pids``
    spent in it (which process pays for what is where a ceiling comes from: on two cores, the
    LLM calls without Kafka already keep this process busy, and the processor adds Kafka)."""

    def __init__(self, pids: dict[str, int] | None = None) -> None:
        self._pids = pids or {}
        self._started = 0.0
        self._cpu: dict[str, float] = {}
        self.elapsed = 0.0

    @property
    def started(self) -> bool:
        return self._started > 0

    def start(self) -> None:
        self._started = time.perf_counter()
        self._cpu = {name: cpu_seconds(pid) for name, pid in self._pids.items()}

    def stop(self) -> None:
        self.elapsed = time.perf_counter() - self._started
        self._cpu = {name: cpu_seconds(pid) - self._cpu[name] for name, pid in self._pids.items()}

    def cpu_a_document(self, documents: int) -> str:
        return ", ".join(
            f"{name} {spent * 1e6 / documents:.0f}" for name, spent in self._cpu.items()
        )


def summaries(count: int) -> list[FinancialDocument]:
    """Sample documents, all asking for a summary: a responder's fixed text answers those."""
    return [msgspec.structs.replace(d, task="summary") for d in documents(count)]


async def fresh_topics(bootstrap: str) -> tuple[str, str, str]:
    run = uuid.uuid4().hex[:8]
    names = (f"in-{run}", f"out-{run}", f"dlq-{run}")
    await ensure_topics(bootstrap, {names[0]: 6, names[1]: 6, names[2]: 1})
    return names


def processor_settings(
    bootstrap: str, topics: tuple[str, str, str], llm_url: str, **more: Any
) -> ProcessorSettings:
    """The processor on ``topics`` (input, output, DLQ from :func:`fresh_topics`), in a group
    of its own."""
    source, sink, dlq = topics
    return ProcessorSettings(
        bootstrap_servers=bootstrap,
        input_topic=source,
        output_topic=sink,
        dlq_topic=dlq,
        group_id=uuid.uuid4().hex,
        llm_url=llm_url,
        log_level="WARNING",
        **more,
    )


@asynccontextmanager
async def running_processor(
    settings: ProcessorSettings, metrics: ProcessorMetrics
) -> AsyncIterator[DocumentProcessor]:
    """The processor in this process, from when its group gave it the input's partitions (a
    join takes seconds on any broker) until the block ends; then drained and stopped."""
    llm = LLMClient(settings.llm_url, model=None, timeout_s=120)
    processor = DocumentProcessor(settings, llm, metrics)
    stop = asyncio.Event()
    loop = asyncio.create_task(processor.run(stop))
    try:
        await _until_assigned(lambda: processor.assigned, settings.input_topic)
        yield processor
    finally:
        stop.set()
        await loop
        await llm.aclose()


async def processor_rate(
    bootstrap: str, llm_url: str, count: int, concurrency: int, window: Window | None = None
) -> float:
    """Documents per second through the processor, its input waiting on the topic: from its
    partitions' assignment to the ``count``-th result the broker acknowledged. Nothing else
    runs in this process meanwhile (as in a deployment: the documents' producers and the
    results' readers are other processes)."""
    window = window or Window()
    topics = await fresh_topics(bootstrap)
    await send(bootstrap, topics[0], summaries(count))
    settings = processor_settings(
        bootstrap, topics, llm_url, concurrency=concurrency, commit_interval_s=0.5
    )
    metrics = ProcessorMetrics()
    async with running_processor(settings, metrics):
        window.start()
        # Counted once published (the broker acknowledged the result), read off the metric.
        while _counted(metrics.processed) < count:  # noqa: ASYNC110 (a metric, no event)
            await asyncio.sleep(0.005)
        window.stop()
    return count / window.elapsed


def _counted(counter: Counter) -> float:
    return sum(
        sample.value
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    )


class _StartOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Starts ``window`` when the group gives the consumer its partitions (a join takes seconds
    on any broker, and is not throughput)."""

    def __init__(self, window: Window) -> None:
        self._window = window

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        if assigned and not self._window.started:
            self._window.start()


async def bare_loop_rate(
    bootstrap: str,
    count: int,
    messages: list[tuple[bytes, bytes]] | None = None,
    *,
    backlog: bool = False,
    window: Window | None = None,
) -> float:
    """The baseline a processor cannot beat: consume, produce a result, commit. ``messages``
    (key, value) are what is consumed; summary documents unless given. ``backlog``: they wait
    on the topic before the loop starts, and the rate runs from the assignment (as
    ``processor_rate`` measures); else they are sent once the loop has joined, and the rate
    runs from the first one sent."""
    window = window or Window()
    source, sink, _ = await fresh_topics(bootstrap)

    async def fill() -> None:
        if messages is None:
            await send(bootstrap, source, summaries(count))
        else:
            await send_messages(bootstrap, source, messages)

    if backlog:
        await fill()
    assigned = _StartOnAssignment(window) if backlog else None
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=uuid.uuid4().hex,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    consumer.subscribe([source], listener=assigned)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", linger_ms=10)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        if not backlog:
            # Joining happens in the first getmany; nothing is there to read yet.
            while not consumer.assignment():
                await consumer.getmany(timeout_ms=100)
            window.start()
            await fill()
        while done < count:
            batches = await consumer.getmany(timeout_ms=200)
            sent = [
                await producer.send(sink, key=r.key, value=r.value)
                for records in batches.values()
                for r in records
            ]
            await asyncio.gather(*sent)
            if sent:
                await consumer.commit()
            done += len(sent)
        window.stop()
    finally:
        await consumer.stop()
        await producer.stop()
    return count / window.elapsed


async def send_messages(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", linger_ms=10)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def direct_rate(
    llm_url: str, count: int, concurrency: int, window: Window | None = None
) -> float:
    """The same requests without Kafka, through the processor's own LLM client: the messages,
    the document's answer schema, ``max_tokens`` and attribution headers the processor sends
    (the schema and headers were missing until 2026-12-03, when summaries gained a schema)."""
    docs = summaries(count)
    limit = asyncio.Semaphore(concurrency)
    llm = LLMClient(llm_url, model=None, timeout_s=120)
    max_tokens = ProcessorSettings().max_tokens

    async def one(position: int, doc: FinancialDocument) -> None:
        async with limit:
            attribution = {
                HEADER_WORKFLOW_ID: processor_workflow_id(doc.task),
                HEADER_WORKFLOW_RUN_ID: processor_run_id(doc.doc_id, f"direct/0/{position}"),
            }
            await llm.ask(
                messages_for(doc),
                max_tokens=max_tokens,
                json_schema=answer_schema(doc),
                headers=attribution,
            )

    window = window or Window()
    try:
        window.start()
        await asyncio.gather(*(one(i, d) for i, d in enumerate(docs)))
        window.stop()
        return count / window.elapsed
    finally:
        await llm.aclose()


def serve_responder(delay_s: float, workdir: Path) -> ServiceProcess:
    module = workdir / f"responder_{int(delay_s * 1000)}.py"
    module.write_text(
        "from tests.support.openai_responder import OpenAIResponder\n"
        f"app = OpenAIResponder(delay_s={delay_s})\n"
    )
    return ServiceProcess(
        f"{module.stem}:app",
        free_port(),
        {"PYTHONPATH": f"{workdir}:{Path.cwd()}"},
        workdir / f"{module.stem}.log",
    ).start(ready_path="/v1/models")


Runner = Callable[[Coroutine[Any, Any, float]], float]
"""``asyncio.run`` or ``uvloop.run``: every phase's event loop."""


def ceiling_round(
    bootstrap: str, llm_url: str, count: int, pids: dict[str, int], run: Runner
) -> tuple[float, float]:
    """One round of (a), its three phases one after another; prints them and returns the
    processor's ratios to the bare loop and to the calls."""
    timed = Window(pids), Window(pids), Window(pids)
    bare = run(bare_loop_rate(bootstrap, count, backlog=True, window=timed[0]))
    calls = run(direct_rate(llm_url, count, 64, timed[1]))
    ceiling = run(processor_rate(bootstrap, llm_url, count, 64, timed[2]))
    bare_cpu, calls_cpu, ceiling_cpu = (w.cpu_a_document(count) for w in timed)
    print(
        f"(a) bare aiokafka loop {bare:8.0f} docs/s | the same LLM calls without "
        f"Kafka {calls:8.0f} docs/s | processor, instant LLM {ceiling:8.0f} docs/s | "
        f"ratios {ceiling / bare:.2f} and {ceiling / calls:.2f}\n"
        f"    CPU us a document: bare loop {bare_cpu} | calls {calls_cpu} | "
        f"processor {ceiling_cpu}",
        flush=True,
    )
    return ceiling / bare, ceiling / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run")
    parser.add_argument(
        "--documents",
        type=int,
        default=16_000,
        help="documents in each phase of (a); at 4,000 the processor's phase lasts about a "
        "second, and filling the slots and reading the last results are a third of it",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds of (a), each its three phases in turn, and their median ratios (this "
        "machine's speed drifts by a third between minutes; rounds side by side show through)",
    )
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the event loop every phase runs on: uvloop, as uvicorn runs the services (PAS "
        "installs uvicorn[standard]), or asyncio's own (the bench's until 2026-12-05)",
    )
    arguments = parser.parse_args()
    run: Runner = uvloop.run if arguments.loop == "uvloop" else asyncio.run
    parts, count = arguments.parts, arguments.documents
    configure_logging("WARNING")
    with (
        broker_in_scratch() as (work, broker),
        serve_responder(0.0, work) as instant,
        serve_responder(0.2, work) as batching,
        ServiceProcess(
            "services.llm.llama31_8b_service:app",
            free_port(),
            {
                "LLAMA31_8B_REGISTER": "false",
                "LLAMA31_8B_CONTEXT_LENGTH": "2048",
                "LOG_LEVEL": "WARNING",
            },
            work / "llm.log",
        ) as llm,
    ):
        heap = StartupHeap()
        heap.settle()
        try:
            bootstrap = broker.bootstrap_servers
            if "a" in parts:
                pids = {"this process": os.getpid(), "responder": instant.pid, "broker": broker.pid}
                ceilings = [
                    ceiling_round(bootstrap, f"{instant.url}/v1", count, pids, run)
                    for _ in range(arguments.rounds)
                ]
                if len(ceilings) > 1:
                    print(
                        f"(a) median of {len(ceilings)} rounds: ratios "
                        f"{statistics.median(c[0] for c in ceilings):.2f} and "
                        f"{statistics.median(c[1] for c in ceilings):.2f}",
                        flush=True,
                    )
            if "b" in parts:
                direct = run(direct_rate(f"{llm.url}/v1", 14, 4))
                served = run(processor_rate(bootstrap, f"{llm.url}/v1", 14, 4))
                print(
                    f"(b) embedded model direct {direct:6.2f} docs/s | through Kafka "
                    f"{served:6.2f} docs/s | ratio {served / direct:.2f}",
                    flush=True,
                )
            if "c" in parts:
                one = run(processor_rate(bootstrap, f"{batching.url}/v1", 40, 1))
                many = run(processor_rate(bootstrap, f"{batching.url}/v1", 480, 16))
                print(
                    f"(c) batching backend, one at a time {one:6.2f} docs/s | concurrency 16 "
                    f"{many:6.2f} docs/s | ratio {many / one:.1f}"
                )
        finally:
            heap.release()


if __name__ == "__main__":
    main()
