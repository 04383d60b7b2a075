"""A broker slow to acknowledge: the processor's slots go on to the next documents once a result
is handed to the producer (never more LLM calls at once than its bound), but no offset is
committed past a result the broker has not acknowledged; once it does, everything commits.

The broker is the embedded one behind a wire proxy that holds back its answers to Produce
requests (``tests/support/kafka_ack_delay.py``); the LLM is a fake OpenAI-compatible server
(its documented chat wire format)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common.kafka.topics import ensure_topics
from services.kafka_llm_processor.send_samples import documents
from tests.kafka_llm_processor.conftest import PROCESSOR_APP, as_messages, collect, send
from tests.support.asgi_server import serve_asgi
from tests.support.kafka_ack_delay import AckDelayProxy, broker_behind_proxy
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import ServiceProcess, free_port

DOCUMENTS = 24
PARTITIONS = 3


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[AckDelayProxy]:
    """A broker of the test's own, reached only through a proxy that can hold its
    acknowledgements back."""
    with broker_behind_proxy(tmp_path) as running:
        yield running


async def committed(bootstrap: str, group: str, topic: str) -> int:
    """Offsets the group has committed, summed over the topic's partitions."""
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await probe.start()
    try:
        offsets = [await probe.committed(TopicPartition(topic, p)) for p in range(PARTITIONS)]
    finally:
        await probe.stop()
    return sum(offset or 0 for offset in offsets)


async def test_offsets_wait_for_the_broker_s_acknowledgements(
    proxy: AckDelayProxy, tmp_path: Path
) -> None:
    bootstrap = proxy.bootstrap_servers
    run = uuid.uuid4().hex[:8]
    source, sink, dlq, group = f"docs-{run}", f"results-{run}", f"dlq-{run}", f"group-{run}"
    await ensure_topics(bootstrap, {source: PARTITIONS, sink: PARTITIONS, dlq: 1})
    docs = [msgspec.structs.replace(d, task="summary") for d in documents(DOCUMENTS)]
    await send(bootstrap, source, as_messages(docs))

    backend = OpenAIResponder(delay_s=0.05)
    with serve_asgi(backend) as url:
        proxy.hold()
        processor = ServiceProcess(
            PROCESSOR_APP,
            free_port(),
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "INPUT_TOPIC": source,
                "OUTPUT_TOPIC": sink,
                "DLQ_TOPIC": dlq,
                "LLM_URL": f"{url}/v1",
                "PROCESSOR_GROUP_ID": group,
                "PROCESSOR_CONCURRENCY": "4",
                "PROCESSOR_COMMIT_INTERVAL_S": "0.2",
                # The acknowledgements are late, not lost: no result may give up on them.
                "PROCESSOR_PUBLISH_DEADLINE_S": "120",
                "PROCESSOR_SPILL_DIR": str(tmp_path / "spill"),
            },
            tmp_path / "processor.log",
        ).start()
        try:
            # Every document is answered although none of the results is acknowledged yet.
            for _ in range(600):
                if len(backend.requests) >= DOCUMENTS:
                    break
                await asyncio.sleep(0.1)
            answered_while_held = len(backend.requests)
            await asyncio.sleep(2)  # ten commit intervals
            committed_while_held = await committed(bootstrap, group, source)
            held = proxy.held_acks

            proxy.release()
            results = await collect(bootstrap, sink, DOCUMENTS, timeout_s=120)
            for _ in range(100):
                if await committed(bootstrap, group, source) == DOCUMENTS:
                    break
                await asyncio.sleep(0.2)
            committed_after = await committed(bootstrap, group, source)
        finally:
            processor.stop()

    assert answered_while_held == DOCUMENTS
    assert backend.most_in_flight <= 4
    assert committed_while_held == 0
    assert held > 0, "the proxy held no acknowledgement: the test proved nothing"
    assert sorted(r.doc_id for r in results) == sorted(d.doc_id for d in docs)
    assert committed_after == DOCUMENTS
