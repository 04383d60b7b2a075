"""The partition a keyed record goes to is the one every Kafka client picks for its key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from libs.common.kafka.partitioner import KafkaPartitioner, kafka_partition


@pytest.mark.parametrize(
    ("key", "partition"),
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_keys_go_where_the_java_client_puts_them(key: bytes, partition: int) -> None:
    """Partitions of 1,000 the Java client's default partitioner gives these keys (the vectors
    kafka-python checks its murmur2 against)."""
    assert kafka_partition(key, range(1000)) == partition
    assert KafkaPartitioner()(key, list(range(1000)), []) == partition


def test_every_key_goes_where_aiokafka_puts_it() -> None:
    rng = random.Random(16)
    default = DefaultPartitioner()
    for _ in range(5000):
        key = rng.randbytes(rng.randrange(0, 80))
        partitions = list(range(rng.randrange(1, 64)))
        assert kafka_partition(key, partitions) == default(key, partitions, partitions)
        # aiokafka hands the partitioner the topic's partitions in no promised order.
        shuffled = rng.sample(partitions, len(partitions))
        assert KafkaPartitioner()(key, shuffled, shuffled) == default(key, partitions, partitions)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    chosen = {KafkaPartitioner()(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}
    assert {KafkaPartitioner()(None, [0, 1, 2], []) for _ in range(200)} == {0, 1, 2}
