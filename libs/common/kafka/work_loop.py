"""The bounded-concurrency consume loop, once for every PAS worker that handles Kafka records one
at a time each (the Kafka LLM processor, the LangGraph runner's bridge).

- **Slots.** ``handle`` works on a record in one of ``slots`` slots. It returns ``None`` when the
  record is recorded (committing past it is safe), or an awaitable that completes once it is
  (typically: its result acknowledged by the broker). The slot is free as soon as ``handle``
  returns, so a broker's acknowledgement never holds up the work; the records handed over and
  not yet recorded are bounded too (``unrecorded``).
- **Fetching** asks for no more records than there is room for, and for none while the room is
  full: no ``pause()``, because aiokafka drops what it prefetched for a paused partition and
  fetches it again after ``resume()``, which stalls the loop. Not polling meanwhile is safe as
  long as the consumer's ``max_poll_interval_ms`` exceeds the longest a record may take.
- **Commits** happen every ``commit_interval_s``, per partition, and only below the lowest
  record not yet recorded (``OffsetBook``): a crash redelivers it, perhaps with some recorded
  ones after it (at least once). A record whose handling or recording raises stays unrecorded,
  and its partition commits no further until a restart redelivers it.
- **Rebalance.** Before partitions move to another consumer, their records get
  ``settle_timeout_s`` to be recorded; what is recorded is committed, and they are forgotten
  (a record still in hand then is handled again by the new owner). A commit the group refuses
  while it rebalances is logged and made again later, not raised.
- **Unreadable records.** A record aiokafka cannot build (a header name not UTF-8) makes its
  ``getmany`` raise, at every try; the loop fetches through a ``Fetcher`` (``fetching.py``),
  which then reads around it. The bad record goes to ``unreadable`` (which dead-letters it) as
  a record of its own, booked and committed like any other, the good records of its batch to
  ``handle``; the other partitions flow on.
- **Stop.** Fetching stops; records in slots and awaiting acknowledgement get
  ``drain_timeout_s`` to be recorded; what is recorded is committed; the rest is cancelled and
  stays uncommitted, so it comes back after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeAlias, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError

from libs.common.kafka.fetching import Fetcher
from libs.common.kafka.offsets import OffsetBook
from libs.common.kafka.records import TrackAssignment
from libs.common.kafka.unreadable import Unreadable

logger = structlog.get_logger("pas.kafka")

Record: TypeAlias = "ConsumerRecord[bytes, bytes]"
Recording = Awaitable[None]
"""Completes once a record handed over is recorded; raising means it is not."""
Handler = Callable[[Record], Awaitable[Recording | None]]
_Item = TypeVar("_Item")
UnreadableHandler = Callable[[Unreadable], Awaitable[Recording | None]]
"""Like ``Handler``, for a record aiokafka cannot build: it dead-letters the record."""


class NotRecorded(Exception):
    """Raised by a handler, or by what it handed over, when its record was not recorded and the
    handler has already said why: the offset stays uncommitted, nothing more is logged."""


@dataclass(frozen=True, kw_only=True)
class LoopLimits:
    slots: int
    """Records being handled at once."""
    unrecorded: int
    """Records handed over (their slot free) and not yet recorded, at most."""
    commit_interval_s: float
    settle_timeout_s: float
    """On a rebalance, how long the records of the partitions leaving may take."""
    drain_timeout_s: float
    """On stop, how long the records in hand may take."""


class WorkLoop:
    """One consumer's loop (see the module). Made for one run of the consumer: ``run`` starts
    the consumer, and stops it when done."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topics: list[str],
        handle: Handler,
        limits: LoopLimits,
        *,
        unreadable: UnreadableHandler,
        assigned: set[TopicPartition] | None = None,
        name: str = "work loop",
        on_commit: Callable[[WorkLoop], None] | None = None,
    ) -> None:
        self.consumer = consumer
        self.assigned = assigned if assigned is not None else set()
        self.joined = False
        self._handle = handle
        self._limits = limits
        self._name = name
        self._on_commit = on_commit
        self._unreadable = unreadable
        self._book = OffsetBook()
        self._fetcher = Fetcher(consumer, name=name)
        # Every record in hand (in a slot or handed over), by its task.
        self._records: dict[asyncio.Task[None], TopicPartition] = {}
        self._in_slots = 0
        self._room_made = asyncio.Event()
        consumer.subscribe(
            topics,
            listener=TrackAssignment(self.assigned, self._settle, placed=self._fetcher.placed),
        )

    @property
    def in_slots(self) -> int:
        return self._in_slots

    @property
    def in_hand(self) -> int:
        """Records in slots or handed over, not yet recorded."""
        return len(self._records)

    def lag(self) -> dict[TopicPartition, int]:
        """Per owned partition, how far its committed offset is behind its end."""
        found = {}
        for tp in self.consumer.assignment():
            highwater = self.consumer.highwater(tp)
            committed = self._book.last_committed(tp)
            if highwater is not None and committed is not None:
                found[tp] = max(0, highwater - committed)
        return found

    async def run(self, stop: asyncio.Event) -> None:
        """Until ``stop`` is set, then drain. Returns at once if ``stop`` comes while the
        consumer is still joining its group."""
        try:
            if not await self._joined(stop):
                return
            self.joined = True
            logger.info("consuming", loop=self._name, slots=self._limits.slots)
            last_commit = time.monotonic()
            while not stop.is_set():
                await self._fetch()
                if time.monotonic() - last_commit >= self._limits.commit_interval_s:
                    await self.commit()
                    last_commit = time.monotonic()
            await self._drain()
        finally:
            self.joined = False
            await self._cancel(list(self._records))
            await self.consumer.stop()

    async def _joined(self, stop: asyncio.Event) -> bool:
        """Start the consumer (it waits until the group has formed); ``False`` if ``stop``
        comes first."""
        joining = asyncio.ensure_future(self.consumer.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({joining, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not joining.done():
            joining.cancel()
            await asyncio.gather(joining, return_exceptions=True)
            return False
        joining.result()
        return True

    def _room(self) -> int:
        limits = self._limits
        return min(
            limits.slots - self._in_slots,
            limits.slots + limits.unrecorded - len(self._records),
        )

    async def _fetch(self) -> None:
        room = self._room()
        if room <= 0:
            # Woken when a slot frees or a record is recorded; at the latest when a commit is
            # due (records recorded meanwhile are committed on time).
            self._room_made.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._limits.commit_interval_s):
                    await self._room_made.wait()
            return
        # Records come from aiokafka's prefetch buffer, so refilling a few slots is cheap.
        fetched = await self._fetcher.getmany(timeout_ms=200, max_records=room)
        for tp, records in fetched.records.items():
            for record in records:
                self._start(tp, record.offset, self._handle, record)
        for item in fetched.unreadable:
            self._start(item.topic_partition, item.offset, self._unreadable, item)

    def _start(
        self,
        tp: TopicPartition,
        offset: int,
        handle: Callable[[_Item], Awaitable[Recording | None]],
        item: _Item,
    ) -> None:
        self._book.started(tp, offset)
        self._in_slots += 1
        task = asyncio.create_task(self._work(tp, offset, handle, item))
        self._records[task] = tp
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._records.pop(task, None)
        self._room_made.set()

    async def _work(
        self,
        tp: TopicPartition,
        offset: int,
        handle: Callable[[_Item], Awaitable[Recording | None]],
        item: _Item,
    ) -> None:
        in_slot = True
        try:
            recording = await handle(item)
            self._in_slots -= 1
            in_slot = False
            self._room_made.set()
            if recording is not None:
                await recording
            self._book.finished(tp, offset)
        except NotRecorded:
            pass
        except Exception:
            logger.exception(
                "a record was not recorded; its partition commits no further until a restart",
                loop=self._name,
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
            )
        finally:
            if in_slot:
                self._in_slots -= 1

    async def commit(self, partitions: set[TopicPartition] | None = None) -> None:
        # Only partitions still owned: a rebalance may have moved the others.
        owned = self.consumer.assignment()
        offsets = self._book.committable(owned if partitions is None else partitions & owned)
        if offsets:
            try:
                await self.consumer.commit(offsets)
            except CommitFailedError as exc:
                # Kafka refuses a commit while the group rebalances (or after it moved on
                # without this member). The book keeps the offsets: the settle before the
                # partitions leave, or the next interval if they stay, commits them. Raising
                # restarted the loop: every record in hand cancelled and handled again.
                logger.warning(
                    "commit refused: the group is rebalancing", loop=self._name, error=str(exc)
                )
                return
            self._book.committed(offsets)
        if self._on_commit is not None:
            self._on_commit(self)

    async def _settle(self, partitions: set[TopicPartition]) -> None:
        pending = [task for task, tp in self._records.items() if tp in partitions]
        if pending:
            await asyncio.wait(pending, timeout=self._limits.settle_timeout_s)
        try:
            await self.commit(partitions)
        finally:
            # Forgotten even if the commit fails: a partition that comes back starts from its
            # committed offset, and a book kept from before would commit an older one.
            self._book.forget(partitions)

    async def _drain(self) -> None:
        self.consumer.pause(*self.consumer.assignment())
        in_hand = list(self._records)
        logger.info("draining", loop=self._name, in_flight=len(in_hand))
        if in_hand:
            await asyncio.wait(in_hand, timeout=self._limits.drain_timeout_s)
        await self.commit()

    @staticmethod
    async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
