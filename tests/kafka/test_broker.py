"""The broker every PAS test and script uses: real Kafka protocol, PAS's topics, keyed order.

Each test that writes does so on topics of its own: other tests consume PAS's topics.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from libs.common.kafka.topics import PAS_TOPICS, ensure_topics
from tests.conftest import docker_engine_answers


async def partition_counts(bootstrap: str, topics: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {t["topic"]: len(t["partitions"]) for t in described}


async def test_pas_topics_exist_with_their_partitions(kafka_bootstrap: str) -> None:
    assert await partition_counts(kafka_bootstrap, list(PAS_TOPICS)) == dict(PAS_TOPICS)


async def test_ensure_topics_creates_what_is_missing_and_leaves_existing_topics_alone(
    kafka_bootstrap: str,
) -> None:
    run = uuid.uuid4().hex[:8]
    first, second = f"ensure-a-{run}", f"ensure-b-{run}"

    await ensure_topics(kafka_bootstrap, {first: 3})
    # A second time: the existing topic keeps its partitions, the missing one is created.
    await ensure_topics(kafka_bootstrap, {first: 5, second: 2})

    assert await partition_counts(kafka_bootstrap, [first, second]) == {first: 3, second: 2}


async def produce_and_read_back_in_key_order(bootstrap: str) -> None:
    """30 keyed messages on a fresh 3-partition topic: each key stays on one partition, in the
    order sent, and a group that commits what it read has committed all 30."""
    topic = f"keyed-order-{uuid.uuid4().hex[:8]}"
    partitions = 3
    await ensure_topics(bootstrap, {topic: partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", linger_ms=5)
    await producer.start()
    try:
        for n in range(30):
            await producer.send(topic, key=f"doc-{n % 3}".encode(), value=str(n).encode())
        await producer.flush()
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"broker-test-{topic}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen: dict[bytes, list[int]] = defaultdict(list)
    homes: dict[bytes, set[int]] = defaultdict(set)
    try:
        async with asyncio.timeout(60):
            while sum(len(v) for v in seen.values()) < 30:
                batches = await consumer.getmany(timeout_ms=500)
                for tp, messages in batches.items():
                    for message in messages:
                        assert message.key is not None
                        assert message.value is not None
                        seen[message.key].append(int(message.value))
                        homes[message.key].add(tp.partition)
                await consumer.commit()
        committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()

    assert sorted(seen) == [b"doc-0", b"doc-1", b"doc-2"]
    for key, values in seen.items():
        assert values == sorted(values), f"{key!r} arrived out of order"
        assert len(values) == 10
        assert len(homes[key]) == 1, f"{key!r} was spread over partitions"
    assert sum(offset or 0 for offset in committed) == 30


async def test_keyed_messages_stay_in_order_on_one_partition(kafka_bootstrap: str) -> None:
    await produce_and_read_back_in_key_order(kafka_bootstrap)


@pytest.mark.skipif(not docker_engine_answers(), reason="no Docker engine answers here")
def test_kafka_in_a_container_when_docker_is_there() -> None:
    from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

    with KafkaContainer() as kafka:
        bootstrap = kafka.get_bootstrap_server()
        asyncio.run(ensure_topics(bootstrap))
        assert asyncio.run(partition_counts(bootstrap, list(PAS_TOPICS))) == dict(PAS_TOPICS)
        asyncio.run(produce_and_read_back_in_key_order(bootstrap))
