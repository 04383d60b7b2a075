"""The batch publisher on a real broker: what ``publish`` returned for is on the topic, on its
key's partition, in the order published; a record the broker refuses fails alone; a batch
that fails is sent again record by record until each one's deadline."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import MessageSizeTooLargeError, ProducerClosed

from libs.common.kafka.partitioner import kafka_partition
from libs.common.kafka.publisher import BatchPublisher
from libs.common.kafka.records import PublishFailed, retriable
from libs.common.kafka.topics import ensure_topics
from tests.kafka.conftest import Retries
from tests.support.kafka_ack_delay import AckDelayProxy, broker_behind_proxy
from tests.support.topic_reader import read_from_start

BATCH_BYTES = 262_144


def _key_and_value(record: ConsumerRecord[bytes, bytes]) -> tuple[int, bytes, bytes]:
    assert record.key is not None
    assert record.value is not None
    return record.partition, record.key, record.value


@asynccontextmanager
async def publishing(
    bootstrap: str, *, deadline_s: float = 30, **producer_options: Any
) -> AsyncIterator[BatchPublisher]:
    """A publisher on a started producer, stopped after."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **producer_options)
    await producer.start()
    try:
        yield BatchPublisher(producer, batch_bytes=BATCH_BYTES, deadline_s=deadline_s)
    finally:
        await producer.stop()


async def _topic(bootstrap: str, partitions: int = 6) -> str:
    topic = f"published-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: partitions})
    return topic


async def test_every_record_published_is_on_its_keys_partition_in_the_order_published(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap)
    keys = [f"doc-{n}".encode() for n in range(40)]
    async with publishing(kafka_bootstrap, linger_ms=5) as publisher:
        # The first goes before the producer knows the topic's partitions: sent alone.
        await publisher.publish(topic, keys[0], b"0:first", [("trace", b"t-0")])
        # Then many at once, each key's in order, interleaved as a processor's slots finish.
        await asyncio.gather(
            *(
                publisher.publish(topic, keys[n % 40], f"{n % 40}:{n // 40}".encode())
                for n in range(2000)
            )
        )
        await publisher.close()

    found = await read_from_start(kafka_bootstrap, topic, _key_and_value, want=2001, timeout_s=30)
    assert len(found) == 2001
    by_key: dict[bytes, list[bytes]] = {}
    for partition, key, value in found:
        assert partition == kafka_partition(key, range(6))
        by_key.setdefault(key, []).append(value)
    assert by_key[keys[0]][0] == b"0:first"
    for n, key in enumerate(keys):
        published = [f"{n}:{turn}".encode() for turn in range(50)]
        assert [v for v in by_key[key] if v != b"0:first"] == published


async def test_a_record_the_broker_refuses_fails_alone(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap, partitions=1)
    async with publishing(kafka_bootstrap, linger_ms=5) as publisher:
        await publisher.publish(topic, b"k", b"known")  # the topic's partitions are known
        outcomes = await asyncio.gather(
            publisher.publish(topic, b"k", b"before"),
            publisher.publish(topic, b"k", b"x" * (2 * 1024 * 1024)),
            publisher.publish(topic, b"k", b"after"),
            return_exceptions=True,
        )
        await publisher.close()

    assert outcomes[0] is None
    assert outcomes[2] is None
    refused = outcomes[1]
    assert isinstance(refused, PublishFailed)
    assert isinstance(refused.__cause__, MessageSizeTooLargeError)
    found = await read_from_start(kafka_bootstrap, topic, _key_and_value, want=3, timeout_s=30)
    assert [value for _, _, value in found] == [b"known", b"before", b"after"]


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[AckDelayProxy]:
    """A broker of the test's own, reached only through a proxy that can hold its
    acknowledgements back."""
    with broker_behind_proxy(tmp_path) as running:
        yield running


async def test_a_batch_not_acknowledged_in_time_is_sent_again_until_it_is(
    proxy: AckDelayProxy, retries: Retries
) -> None:
    """aiokafka gives a batch up after its request timeout; each of its records is then sent
    on its own, again and again, until the broker acknowledges it within its deadline."""
    topic = await _topic(proxy.bootstrap_servers, partitions=2)
    async with publishing(
        proxy.bootstrap_servers, request_timeout_ms=500, deadline_s=120
    ) as publisher:
        await publisher.publish(topic, b"k", b"before")
        proxy.hold()
        sending = asyncio.gather(
            *(publisher.publish(topic, f"k{n}".encode(), f"held-{n}".encode()) for n in range(20))
        )
        await retries.scheduled.wait()  # a batch failed, and a record sent alone failed too
        proxy.release()
        await sending
        await publisher.close()

    assert proxy.held_acks >= 1
    assert all(retriable(r.caused_by) for r in retries.seen)
    found = await read_from_start(
        proxy.bootstrap_servers, topic, _key_and_value, want=21, timeout_s=30
    )
    # At least once: a batch given up on may have been written before its records went alone.
    assert {value for _, _, value in found} == {b"before"} | {
        f"held-{n}".encode() for n in range(20)
    }


async def test_past_its_deadline_a_record_fails(proxy: AckDelayProxy) -> None:
    topic = await _topic(proxy.bootstrap_servers, partitions=1)
    async with publishing(
        proxy.bootstrap_servers, request_timeout_ms=500, deadline_s=2
    ) as publisher:
        await publisher.publish(topic, b"k", b"before")
        proxy.hold()
        with pytest.raises(PublishFailed) as raised:
            await publisher.publish(topic, b"k", b"never acknowledged")
        proxy.release()
        await publisher.close()

    assert raised.value.topic == topic
    assert "not acknowledged within 2 s" in str(raised.value)


async def test_a_closed_publisher_takes_nothing(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap, partitions=1)
    async with publishing(kafka_bootstrap) as publisher:
        await publisher.close()
        with pytest.raises(ProducerClosed):
            await publisher.publish(topic, b"k", b"late")
