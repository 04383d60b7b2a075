"""Processor fixtures: a real broker, the real embedded model, topics of a test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DeadLetter, DocumentResult, FinancialDocument
from tests.support.llm_service import start_llm_service
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess, ServiceProcesses
from tests.support.topic_reader import read_from_start

PROCESSOR_APP = "services.kafka_llm_processor.app:app"


class Topics(msgspec.Struct, frozen=True):
    input: str
    output: str
    dlq: str


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics(input=f"docs-{run}", output=f"results-{run}", dlq=f"dlq-{run}")
    asyncio.run(ensure_topics(kafka_bootstrap, {names.input: 3, names.output: 3, names.dlq: 1}))
    return names


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Llama 3.1 8B wrapper on the embedded model, as the processor's LLM."""
    service = start_llm(tmp_path_factory, context_length=2048)
    yield f"{service.url}/v1"
    service.stop()


def start_llm(tmp_path_factory: pytest.TempPathFactory, *, context_length: int) -> ServiceProcess:
    """The Llama 3.1 8B wrapper on the embedded model with a context of ``context_length``."""
    return start_llm_service(
        Path(tmp_path_factory.mktemp("llm")) / "llm.log",
        # Requests queue for the one model: on busy cores the last of a batch waits minutes,
        # and a timed-out wait would be retried, changing what the tests count.
        {"LLAMA31_8B_CONTEXT_LENGTH": str(context_length), "LLM_TIMEOUT": "600"},
    )


@pytest.fixture
def start_processor(
    kafka_bootstrap: str, topics: Topics, service_processes: ServiceProcesses, tmp_path: Path
) -> Callable[..., ServiceProcess]:
    def start(llm_url: str, **env: str) -> ServiceProcess:
        return service_processes.start(
            PROCESSOR_APP,
            {
                "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "INPUT_TOPIC": topics.input,
                "OUTPUT_TOPIC": topics.output,
                "DLQ_TOPIC": topics.dlq,
                "LLM_URL": llm_url,
                "PROCESSOR_GROUP_ID": f"group-{topics.input}",
                "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
                # The embedded model answers one request at a time: on busy cores the last of a
                # batch waits minutes, and a retry would change what the tests count.
                "PROCESSOR_LLM_TIMEOUT_S": "600",
                # Never the repository's .pas/spill: a test reads its own spill file.
                "PROCESSOR_SPILL_DIR": str(tmp_path / "spill"),
                **env,
            },
            name="processor",
        )

    return start


async def send(
    bootstrap: str,
    topic: str,
    messages: list[tuple[bytes, bytes]],
    *,
    partition: int | None = None,
    compression: str | None = None,
) -> None:
    """Send in order; to one ``partition`` when given, else by key; batches compressed with
    ``compression`` (a Kafka codec name) when given."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type=compression)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value, partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


def as_messages(docs: list[FinancialDocument]) -> list[tuple[bytes, bytes]]:
    return [(d.doc_id.encode(), msgspec.json.encode(d)) for d in docs]


async def collect(
    bootstrap: str,
    topic: str,
    want: int,
    timeout_s: float = 120,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Read the topic from the start until ``want`` messages came, or ``until`` says enough
    (or the timeout)."""
    kind = DeadLetter if topic.startswith("dlq-") else DocumentResult
    return await read_from_start(
        bootstrap,
        topic,
        lambda record: msgspec.json.decode(record.value or b"", type=kind),
        want=want,
        timeout_s=timeout_s,
        enough=until,
    )


async def metrics_showing(url: str, line: str, timeout_s: float = 60) -> str:
    """The service's /metrics once it shows ``line`` (or at the timeout)."""
    async with httpx.AsyncClient() as http:

        async def text() -> str:
            return (await http.get(f"{url}/metrics")).text

        return await poll_async(
            text, until=lambda text: line in text, timeout_s=timeout_s, interval_s=0.2
        )
