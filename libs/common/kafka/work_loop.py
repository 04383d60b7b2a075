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
  ``settle_timeout_s`` to be recorded; what is recorded is committed, and they are forgotten.
- **Unreadable records.** A record aiokafka cannot build (a header name not UTF-8) makes its
  ``getmany`` raise, at every try. The loop then seeks every partition back to the record after
  the last it handed on (that call built and threw away records of other partitions too), reads
  each partition alone, and the one that fails from its batch (``unreadable.py``): the bad
  record goes to ``unreadable`` (which dead-letters it) as a record of its own, booked and
  committed like any other, the good records of its batch to ``handle``; the position moves
  past them, and the other partitions flow on.
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
from aiokafka.errors import IllegalStateError

from libs.common.kafka.offsets import OffsetBook
from libs.common.kafka.records import TrackAssignment
from libs.common.kafka.unreadable import UNREADABLE_ERRORS, Unreadable, read_past_unreadable

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
        assigned: set[TopicPartition] | None = None,
        name: str = "work loop",
        on_commit: Callable[[WorkLoop], None] | None = None,
        unreadable: UnreadableHandler | None = None,
    ) -> None:
        """``unreadable``: without it, a record aiokafka cannot build stops the loop (raised
        from ``run``), as it did before."""
        self.consumer = consumer
        self.assigned = assigned if assigned is not None else set()
        self.joined = False
        self._handle = handle
        self._limits = limits
        self._name = name
        self._on_commit = on_commit
        self._unreadable = unreadable
        self._book = OffsetBook()
        # Where each partition's reading began in this assignment (asked once, before its
        # first fetch): where to seek it back after a fetch that failed, if nothing of it was
        # handed on since (else the book knows).
        self._began: dict[TopicPartition, int] = {}
        self._unplaced: set[TopicPartition] = set()
        # Every record in hand (in a slot or handed over), by its task.
        self._records: dict[asyncio.Task[None], TopicPartition] = {}
        self._in_slots = 0
        self._room_made = asyncio.Event()
        consumer.subscribe(
            topics,
            listener=TrackAssignment(self.assigned, self._settle, placed=self._unplaced.update),
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
        if self._unplaced and self._unreadable is not None:
            await self._place()
        # Records come from aiokafka's prefetch buffer, so refilling a few slots is cheap.
        try:
            batches = await self.consumer.getmany(timeout_ms=200, max_records=room)
        except UNREADABLE_ERRORS as exc:
            if self._unreadable is None:
                raise
            await self._read_around(exc)
            return
        for tp, records in batches.items():
            for record in records:
                self._start(tp, record.offset, self._handle, record)

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

    async def _place(self) -> None:
        """Note where the partitions assigned since the last fetch begin."""
        placing, self._unplaced = self._unplaced, set()
        for tp in placing:
            with contextlib.suppress(IllegalStateError):  # moved on again meanwhile
                self._began[tp] = await self.consumer.position(tp)

    async def _read_around(self, error: Exception) -> None:
        """After a fetch failed on a record aiokafka cannot build (see the module)."""
        owned = sorted(self.consumer.assignment())
        logger.warning(
            "a fetch met a record it cannot build; reading each partition alone",
            loop=self._name,
            error=f"{type(error).__name__}: {error}",
        )
        for tp in owned:
            resume_at = self._book.next_to_read(tp)
            if resume_at is None:
                resume_at = self._began.get(tp)
            if resume_at is not None:
                self.consumer.seek(tp, resume_at)
        for tp in owned:
            room = self._room()
            if room <= 0:
                return  # the rest on the next fetches; a failure brings the loop back here
            try:
                batches = await self.consumer.getmany(tp, timeout_ms=200, max_records=room)
            except UNREADABLE_ERRORS as exc:
                await self._read_past(tp, room, exc)
                continue
            for record in batches.get(tp, []):
                self._start(tp, record.offset, self._handle, record)

    async def _read_past(self, tp: TopicPartition, room: int, error: Exception) -> None:
        """Read ``tp`` from its batches, hand its unreadable record over to be dead-lettered,
        and move its position past what was read."""
        assert self._unreadable is not None
        # A failed build leaves the position where the failing fetch began.
        position = await self.consumer.position(tp)
        read = await read_past_unreadable(self.consumer, tp, position, limit=room)
        if not read.unreadable:
            # aiokafka cannot build what reads well here: not a record this loop can pass by.
            raise error
        for item in read.found:
            if isinstance(item, Unreadable):
                logger.error(
                    "record unreadable; handing it over to be dead-lettered",
                    loop=self._name,
                    topic=tp.topic,
                    partition=tp.partition,
                    offset=item.offset,
                    error_type=item.error_type,
                    reason=item.reason,
                    recovered=item.recovered,
                )
                self._start(tp, item.offset, self._unreadable, item)
            else:
                self._start(tp, item.offset, self._handle, item)
        self.consumer.seek(tp, read.next_offset)

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
            await self.consumer.commit(offsets)
            self._book.committed(offsets)
        if self._on_commit is not None:
            self._on_commit(self)

    async def _settle(self, partitions: set[TopicPartition]) -> None:
        pending = [task for task, tp in self._records.items() if tp in partitions]
        if pending:
            await asyncio.wait(pending, timeout=self._limits.settle_timeout_s)
        await self.commit(partitions)
        self._book.forget(partitions)
        for tp in partitions:
            self._began.pop(tp, None)

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
