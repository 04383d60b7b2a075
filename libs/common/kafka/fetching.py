"""A consumer's fetches that go on past a record aiokafka cannot build (``unreadable.py``).

``Fetcher.getmany`` is the consumer's own ``getmany`` while that works. When it raises on a
record aiokafka cannot build, it puts right what aiokafka left behind (``unreadable.py``):

- every partition it was reading is sought back to the record after the last one this fetcher
  handed on; if it handed on none since the partition was assigned (or sought by its caller),
  to where the partition's reading began (its position then, asked once before the next fetch;
  else the group's committed offset). That call built and threw away records of other
  partitions too, and a partition sought back reads them again.
- each partition is then read alone, and the one that fails is read from its raw batches: its
  good records come back as records, the bad one as an ``Unreadable`` (with its coordinates
  and why), and its position moves past them, so the next fetch goes on after it.

What a consumer must do with an ``Unreadable``: dead-letter it, and commit past it only once
the letter is acknowledged, as with any record it cannot use. ``Fetched.next_offsets`` counts
it, so a batch's commit covers it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalOperation, IllegalStateError

from libs.common.kafka.unreadable import UNREADABLE_ERRORS, Unreadable, read_past_unreadable

logger = structlog.get_logger("pas.kafka")

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"

_ALONE_TIMEOUT_MS = 200
"""How long reading one partition alone waits for records, after a fetch that failed."""


@dataclass(frozen=True)
class Fetched:
    """What one fetch gave: the records, by partition, and the records it could not build."""

    records: Mapping[TopicPartition, list[Record]]
    unreadable: list[Unreadable] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.records) or bool(self.unreadable)

    def next_offsets(self) -> dict[TopicPartition, int]:
        """Per partition fetched, the offset after its last record, readable or not: what a
        consumer commits once it has used (or dead-lettered) them all."""
        offsets = {tp: records[-1].offset + 1 for tp, records in self.records.items() if records}
        for item in self.unreadable:
            tp = item.topic_partition
            offsets[tp] = max(offsets.get(tp, 0), item.offset + 1)
        return offsets


class Fetcher:
    """``getmany`` for one consumer, past records it cannot build (see the module). Tell it of
    every partition whose position is set afresh (assigned: ``TrackAssignment(placed=...)``;
    sought by the caller): ``placed``."""

    def __init__(self, consumer: AIOKafkaConsumer, *, name: str) -> None:
        self._consumer = consumer
        self._name = name
        # Per partition: the offset after the last record handed on, or where its reading
        # began since it was placed. Where to seek it back after a fetch that failed.
        self._resume_at: dict[TopicPartition, int] = {}
        self._unplaced: set[TopicPartition] = set()

    def placed(self, partitions: Iterable[TopicPartition]) -> None:
        """These partitions' positions were set afresh (assigned, or sought): where their
        reading begins is asked before the next fetch."""
        for tp in partitions:
            self._resume_at.pop(tp, None)
            self._unplaced.add(tp)

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int, max_records: int | None = None
    ) -> Fetched:
        """The consumer's ``getmany(*partitions, ...)``, and the records it could not build."""
        if self._unplaced:
            await self._place()
        try:
            batches = await self._consumer.getmany(
                *partitions, timeout_ms=timeout_ms, max_records=max_records
            )
        except UNREADABLE_ERRORS as exc:
            fetched = await self._read_each(exc, partitions, max_records or sys.maxsize)
        else:
            fetched = Fetched(batches)
        self._resume_at.update(fetched.next_offsets())
        return fetched

    async def _place(self) -> None:
        placing, self._unplaced = self._unplaced, set()
        for tp in placing:
            with contextlib.suppress(IllegalStateError):  # moved on again meanwhile
                position = await self._consumer.position(tp)
                # A fetch may have handed some on while it was being placed.
                self._resume_at.setdefault(tp, position)

    async def _read_each(
        self, error: Exception, partitions: tuple[TopicPartition, ...], max_records: int
    ) -> Fetched:
        """After a fetch failed on a record aiokafka cannot build (see the module)."""
        reading = sorted(partitions or self._consumer.assignment())
        logger.warning(
            "a fetch met a record it cannot build; reading each partition alone",
            consumer=self._name,
            error=f"{type(error).__name__}: {error}",
        )
        for tp in reading:
            resume_at = await self._resume_point(tp)
            # Not a partition that did not move (the failing one among them): a seek drops
            # what aiokafka holds of it, and reading it alone would have to fetch it again.
            if resume_at is not None and resume_at != await self._consumer.position(tp):
                self._consumer.seek(tp, resume_at)
        records: dict[TopicPartition, list[Record]] = {}
        unreadable: list[Unreadable] = []
        room = max_records
        for tp in reading:
            if room <= 0:
                break  # the rest on the next fetches; a failure brings them back here
            try:
                batches = await self._consumer.getmany(
                    tp, timeout_ms=_ALONE_TIMEOUT_MS, max_records=room
                )
                found = batches.get(tp, [])
            except UNREADABLE_ERRORS as exc:
                read, bad = await self._read_past(tp, room, exc)
                found = read
                unreadable += bad
                room -= len(bad)
            if found:
                records[tp] = found
                room -= len(found)
        return Fetched(records, unreadable)

    async def _resume_point(self, tp: TopicPartition) -> int | None:
        """Where ``tp`` resumes: past what was handed on, else where it began being read."""
        resume_at = self._resume_at.get(tp)
        if resume_at is None:
            # Assigned during the fetch that failed, before it was placed: a group member's
            # reading of a partition begins at the group's committed offset.
            with contextlib.suppress(IllegalOperation):  # a consumer without a group
                resume_at = await self._consumer.committed(tp)
        return resume_at

    async def _read_past(
        self, tp: TopicPartition, room: int, error: Exception
    ) -> tuple[list[Record], list[Unreadable]]:
        """Read ``tp`` from its batches, through its first unreadable record, and move its
        position past what was read."""
        # A failed build leaves the position where the failing fetch began.
        position = await self._consumer.position(tp)
        read = await read_past_unreadable(self._consumer, tp, position, limit=room)
        if not read.unreadable:
            # aiokafka cannot build what reads well here: not a record a consumer can pass by.
            raise error
        for item in read.unreadable:
            logger.error(
                "record unreadable; handing it over to be dead-lettered",
                consumer=self._name,
                topic=tp.topic,
                partition=tp.partition,
                offset=item.offset,
                error_type=item.error_type,
                reason=item.reason,
                recovered=item.recovered,
            )
        self._consumer.seek(tp, read.next_offset)
        records = [item for item in read.found if not isinstance(item, Unreadable)]
        return records, read.unreadable
