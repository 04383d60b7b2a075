"""Which offset of each partition may be committed: never past a record still being handled.

Records finish out of order (many in flight at once); the commit stops at the lowest one still
in flight, so a crash redelivers it, and perhaps some finished ones: at least once. A record is
``finished`` once it is recorded durably somewhere: its output or dead letter acknowledged by
the broker, or, when no topic takes it, written to the consumer's spill file (see
``records.py``); one recorded nowhere stays in flight, and its partition commits no further. The
Kafka LLM processor and the LangGraph runner's bridge keep their offsets in this book.
"""

from __future__ import annotations

from aiokafka import TopicPartition


class _Partition:
    def __init__(self) -> None:
        self.in_flight: set[int] = set()
        self.next_after_seen: int | None = None
        self.committed: int | None = None

    def committable(self) -> int | None:
        if self.next_after_seen is None:
            return None
        offset = min(self.in_flight) if self.in_flight else self.next_after_seen
        return offset if offset != self.committed else None


class OffsetBook:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _Partition] = {}

    def started(self, tp: TopicPartition, offset: int) -> None:
        partition = self._partitions.get(tp)
        if partition is None:  # not setdefault: that builds a _Partition for every record
            partition = self._partitions[tp] = _Partition()
        partition.in_flight.add(offset)
        partition.next_after_seen = max(partition.next_after_seen or 0, offset + 1)

    def finished(self, tp: TopicPartition, offset: int) -> None:
        partition = self._partitions.get(tp)
        if partition is not None:
            partition.in_flight.discard(offset)

    def committable(self, assigned: set[TopicPartition]) -> dict[TopicPartition, int]:
        """Per assigned partition, the next offset to read, if it moved since the last commit."""
        found = {}
        for tp, partition in self._partitions.items():
            offset = partition.committable() if tp in assigned else None
            if offset is not None:
                found[tp] = offset
        return found

    def last_committed(self, tp: TopicPartition) -> int | None:
        partition = self._partitions.get(tp)
        return None if partition is None else partition.committed

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self._partitions[tp].committed = offset

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)
