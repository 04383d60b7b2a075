"""Which offset of each partition may be committed: never past a document still in flight."""

from __future__ import annotations

from aiokafka import TopicPartition


class PartitionProgress:
    def __init__(self) -> None:
        self._in_flight: set[int] = set()
        self._next_after_seen: int | None = None
        self.committed: int | None = None

    def started(self, offset: int) -> None:
        self._in_flight.add(offset)
        self._next_after_seen = max(self._next_after_seen or 0, offset + 1)

    def finished(self, offset: int) -> None:
        self._in_flight.discard(offset)

    @property
    def busy(self) -> bool:
        return bool(self._in_flight)

    def committable(self) -> int | None:
        """The offset to commit now (the next one to read), if it moved since the last commit.

        Results are acknowledged out of order; the commit stops at the lowest document still
        in flight, so a crash redelivers it (and perhaps some finished ones: at least once).
        """
        if self._next_after_seen is None:
            return None
        offset = min(self._in_flight) if self._in_flight else self._next_after_seen
        return offset if offset != self.committed else None


class OffsetBook:
    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, PartitionProgress] = {}

    def __getitem__(self, tp: TopicPartition) -> PartitionProgress:
        return self._partitions.setdefault(tp, PartitionProgress())

    def committable(
        self, partitions: set[TopicPartition] | None = None
    ) -> dict[TopicPartition, int]:
        return {
            tp: offset
            for tp, progress in self._partitions.items()
            if (partitions is None or tp in partitions)
            and (offset := progress.committable()) is not None
        }

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        for tp, offset in offsets.items():
            self[tp].committed = offset

    def forget(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop(tp, None)
