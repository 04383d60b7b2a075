"""The broker every PAS test and script uses: real Kafka protocol, PAS's topics, keyed order."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from libs.common.constants import TOPIC_FINANCIAL_DOCUMENTS
from libs.common.kafka.topics import PAS_TOPICS, ensure_topics
from tests.conftest import docker_engine_answers


async def test_pas_topics_exist_with_their_partitions(kafka_bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(list(PAS_TOPICS))
    finally:
        await admin.close()

    partitions = {t["topic"]: len(t["partitions"]) for t in described}
    assert partitions == dict(PAS_TOPICS)
    await ensure_topics(kafka_bootstrap)  # a second time changes nothing and does not fail


async def test_keyed_messages_stay_in_order_on_one_partition(kafka_bootstrap: str) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, compression_type="gzip", linger_ms=5
    )
    await producer.start()
    try:
        for n in range(30):
            await producer.send(
                TOPIC_FINANCIAL_DOCUMENTS, key=f"doc-{n % 3}".encode(), value=str(n).encode()
            )
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        TOPIC_FINANCIAL_DOCUMENTS,
        bootstrap_servers=kafka_bootstrap,
        group_id="broker-test",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: dict[bytes, list[int]] = defaultdict(list)
    homes: dict[bytes, set[int]] = defaultdict(set)
    try:
        async with asyncio.timeout(30):
            while sum(len(v) for v in seen.values()) < 30:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    for message in messages:
                        assert message.key is not None
                        seen[message.key].append(int(message.value))
                        homes[message.key].add(tp.partition)
                await consumer.commit()
        committed = [
            await consumer.committed(TopicPartition(TOPIC_FINANCIAL_DOCUMENTS, p))
            for p in range(PAS_TOPICS[TOPIC_FINANCIAL_DOCUMENTS])
        ]
    finally:
        await consumer.stop()

    for key, values in seen.items():
        assert values == sorted(values), f"{key!r} arrived out of order"
        assert len(homes[key]) == 1, f"{key!r} was spread over partitions"
    assert sum(offset or 0 for offset in committed) == 30


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers here")
def test_kafka_in_a_container_when_docker_is_there() -> None:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

    with KafkaContainer() as kafka:
        asyncio.run(ensure_topics(kafka.get_bootstrap_server()))
