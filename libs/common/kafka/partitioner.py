"""Which partition a keyed record goes to: the partition every Kafka client picks for the key.

Kafka's default partitioner (the Java client's, librdkafka's ``murmur2_random``, aiokafka's
``DefaultPartitioner``) takes the key's murmur2 hash (seed ``0x9747b28c``), drops the sign bit
and takes it modulo the topic's partition count, so records of one key land on one partition
whoever produced them. aiokafka computes murmur2 in pure Python, about 5 µs a key, paid by
every keyed send: a tenth of what the Kafka LLM processor spends on Kafka a document. The
``murmurhash2`` extension computes the same hash in 0.2 µs (``tests/kafka/test_partitioner.py``
checks the two agree on random keys of every length).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from murmurhash2 import murmurhash2

KAFKA_MURMUR2_SEED = 0x9747B28C


def kafka_partition(key: bytes | None, partitions: Sequence[int]) -> int:
    """The partition of ``partitions`` (all of the topic's, in order) the key's records go to;
    a record without a key goes to any of them."""
    if key is None:
        return random.choice(partitions)  # noqa: S311 (spreading, not secrets)
    return partitions[(murmurhash2(key, KAFKA_MURMUR2_SEED) & 0x7FFFFFFF) % len(partitions)]


class KafkaPartitioner:
    """aiokafka's ``partitioner`` (``AIOKafkaProducer(partitioner=KafkaPartitioner())``): the
    default partitioner's choices, with the hash computed natively. A record without a key
    goes to a random available partition, as with the default."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return kafka_partition(None, available or all_partitions)
        return kafka_partition(key, sorted(all_partitions))
