"""Reading topics the way an operator's tool must: as no consumer group at all.

The reader assigns itself partitions and never commits, so that looking at a topic (a DLQ, the
results) moves no service's offsets and leaves no group behind on the broker. A record aiokafka
cannot build (a header name not UTF-8, a corrupt batch) is named on stderr, with why, where it
is passed over (``everything``, ``following``); a reader that must account for every record
(``pas dlq list``, ``show``, ``stats``) is given it instead, as an ``Unreadable``
(``everything_held``, ``at``), and says what it is itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import TracebackType
from typing import Self, TypeAlias

import click
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from rich.markup import escape

from libs.cli.runtime import err
from libs.common.constants import KAFKA_FETCH_MAX_WAIT_MS
from libs.common.kafka.fetching import Fetched, Fetcher
from libs.common.kafka.reading import assign_settled, partitions_of
from libs.common.kafka.unreadable import Unreadable

Record: TypeAlias = ConsumerRecord[bytes, bytes]

_POLL_MS = 500


def _all_there(wanted: Iterable[str], known: set[str]) -> None:
    missing = [topic for topic in wanted if topic not in known]
    if missing:
        raise click.ClickException(f"no topic {', '.join(missing)} on the broker")


class TopicReader:
    """A group-less consumer of ``topics`` (all their partitions), from their start or end."""

    def __init__(
        self, bootstrap_servers: str, topics: Iterable[str], *, missing_ok: bool = False
    ) -> None:
        """``missing_ok``: a topic the broker does not have is left out (``topics`` then
        says which are read) instead of an error naming it."""
        self._topics = list(topics)
        self._missing_ok = missing_ok
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=KAFKA_FETCH_MAX_WAIT_MS,
            # A DLQ holds letters up to about 100 KiB each; fetch several at once.
            fetch_max_bytes=52_428_800,
        )
        self._fetcher = Fetcher(self._consumer, name="pas topic reader")
        self.partitions: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        await self._consumer.start()
        try:
            known = await self._consumer.topics()
            if self._missing_ok:
                self._topics = [topic for topic in self._topics if topic in known]
            _all_there(self._topics, known)
            for topic in self._topics:
                self.partitions += partitions_of(self._consumer, topic)
            await assign_settled(self._consumer, self.partitions)
            self._fetcher.placed(self.partitions)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._consumer.stop()

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    async def from_end(self) -> None:
        """Start after what the topics hold now (to wait for what comes next)."""
        await self._consumer.seek_to_end(*self.partitions)
        for tp in self.partitions:
            await self._consumer.position(tp)  # resolve "end" now, before anything is sent
        self._fetcher.placed(self.partitions)

    async def everything(self) -> list[Record]:
        """Every record the topics hold, by partition then offset; one aiokafka cannot build
        is named on stderr and left out (see ``everything_held``)."""
        records = []
        for item in await self.everything_held():
            if isinstance(item, Unreadable):
                _name_skipped(item)
            else:
                records.append(item)
        return records

    async def everything_held(self) -> list[Record | Unreadable]:
        """Every record the topics hold, by partition then offset, those aiokafka cannot build
        among them as an ``Unreadable`` (not named on stderr: the caller shows it).

        Read until the end offsets the broker gives and then until a fetch finds nothing
        more: an end offset may fall short of the last record (the embedded Tansu broker
        answers the last batch's base offset plus one, however many records that batch holds).
        """
        ends = await self._consumer.end_offsets(self.partitions)
        await self._consumer.seek_to_beginning(*self.partitions)
        self._fetcher.placed(self.partitions)
        found: list[Record | Unreadable] = []
        while True:
            fetched = await self._fetch()
            for records in fetched.records.values():
                found += records
            found += fetched.unreadable
            behind = [tp for tp in self.partitions if await self._consumer.position(tp) < ends[tp]]
            if not fetched and not behind:
                break
        return sorted(found, key=_coordinates)

    async def at(self, partition: int, offset: int) -> Record | Unreadable | None:
        """The record at ``partition:offset`` of the first topic (an ``Unreadable`` when
        aiokafka cannot build it); ``None`` when the topic holds no such record (never written,
        or deleted by retention)."""
        tp = TopicPartition(self._topics[0], partition)
        if tp not in self.partitions or offset < 0:
            return None
        first = (await self._consumer.beginning_offsets([tp]))[tp]
        if offset < first:
            return None
        self._consumer.pause(*[p for p in self.partitions if p != tp])
        found = await self._first_from(tp, offset, offset)
        if found is None:
            # A broker whose end offset falls short (see ``everything``) may refuse a fetch at
            # an offset it does hold: look from the partition's start instead.
            found = await self._first_from(tp, first, offset)
        return found

    async def _first_from(
        self, tp: TopicPartition, start: int, offset: int
    ) -> Record | Unreadable | None:
        self._consumer.seek(tp, start)
        self._fetcher.placed([tp])
        # Past the end, the consumer resets to the end and finds nothing.
        while fetched := await self._fetch(tp):
            held: list[Record | Unreadable] = [*fetched.records.get(tp, []), *fetched.unreadable]
            for item in sorted(held, key=_coordinates):
                _, _, item_offset = _coordinates(item)
                if item_offset == offset:
                    return item
                if item_offset > offset:
                    return None  # compacted away
        return None

    async def following(self, timeout_s: float) -> AsyncIterator[Record]:
        """What arrives from the current positions on, for at most ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (left := deadline - loop.time()) > 0:
            fetched = await self._fetch(timeout_ms=int(min(left, 0.5) * 1000) or 1)
            for item in fetched.unreadable:
                _name_skipped(item)
            for records in fetched.records.values():
                for record in records:
                    yield record

    async def _fetch(self, *partitions: TopicPartition, timeout_ms: int = _POLL_MS) -> Fetched:
        """The next records, those aiokafka cannot build apart (``Fetched.unreadable``)."""
        return await self._fetcher.getmany(*partitions, timeout_ms=timeout_ms)


def _name_skipped(item: Unreadable) -> None:
    """Say on stderr that a record is passed over, and why: the reader's caller never sees it."""
    place = f"{item.record.topic}/{item.record.partition}/{item.offset}"
    err.print(f"skipped {escape(place)}: {escape(item.reason)}", soft_wrap=True)


def _coordinates(item: Record | Unreadable) -> tuple[str, int, int]:
    record = item.record if isinstance(item, Unreadable) else item
    return record.topic, record.partition, record.offset
