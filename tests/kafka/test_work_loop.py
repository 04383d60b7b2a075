"""The shared work loop on a real broker: slots bound the work, a slot is free once its record
is handed over, commits never pass a record whose acknowledgement has not come, partitions
leaving on a rebalance are settled first, and a stop drains what is in hand.

The handlers here stand in for a worker: what they hand back is an acknowledgement the test
completes when it likes, as a broker that delays its acknowledgements would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import CommitFailedError

from libs.common.kafka.topics import ensure_topics
from libs.common.kafka.unreadable import Unreadable
from libs.common.kafka.work_loop import LoopLimits, Record, WorkLoop


async def _topic(bootstrap: str, partitions: int, count: int) -> str:
    """A topic of its own with ``count`` records, spread over the partitions in turn."""
    topic = f"loop-{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: partitions})
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for n in range(count):
            await producer.send(topic, value=str(n).encode(), partition=n % partitions)
        await producer.flush()
    finally:
        await producer.stop()
    return topic


def _loop(
    bootstrap: str,
    topic: str,
    group: str,
    handle: Callable[[Record], Awaitable[Awaitable[None] | None]],
    **limits: Any,
) -> WorkLoop:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    chosen = {
        "slots": 1,
        "unrecorded": 8,
        "commit_interval_s": 0.1,
        "settle_timeout_s": 30.0,
        "drain_timeout_s": 30.0,
        **limits,
    }
    return WorkLoop(
        consumer, [topic], handle, LoopLimits(**chosen), unreadable=_no_unreadable_records
    )


async def _no_unreadable_records(item: Unreadable) -> None:
    # Every record here is readable: one that is not leaves its partition uncommitted.
    raise AssertionError(f"an unreadable record at offset {item.offset}: {item.reason}")


async def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int | None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        found = (await admin.list_consumer_group_offsets(group, partitions=[tp])).get(tp)
    finally:
        await admin.close()
    return None if found is None or found.offset < 0 else found.offset


async def _until(predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 (state changed by other tasks, no event)
            await asyncio.sleep(0.02)


async def _committed_once(
    bootstrap: str, group: str, tp: TopicPartition, want: int, timeout_s: float = 60
) -> None:
    async with asyncio.timeout(timeout_s):
        while await _committed(bootstrap, group, tp) != want:  # noqa: ASYNC110 (no event)
            await asyncio.sleep(0.1)


async def test_a_slot_frees_at_hand_over_and_commits_wait_for_the_acknowledgement(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap, 1, 10)
    tp, group = TopicPartition(topic, 0), uuid.uuid4().hex
    held = asyncio.get_running_loop().create_future()
    handled: list[int] = []
    busy = most_busy = 0

    async def handle(record: Record) -> Awaitable[None]:
        nonlocal busy, most_busy
        busy += 1
        most_busy = max(most_busy, busy)
        await asyncio.sleep(0.01)
        busy -= 1
        handled.append(record.offset)
        # Offset 2's acknowledgement is held; the others come at once.
        return held if record.offset == 2 else asyncio.sleep(0)

    loop = _loop(kafka_bootstrap, topic, group, handle, slots=1)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        # One slot: records after 2 are handled only because 2's slot freed at hand-over.
        await _until(lambda: len(handled) == 10)
        await _committed_once(kafka_bootstrap, group, tp, 2)
        await asyncio.sleep(0.5)  # several commit intervals, all below the held record
        still = await _committed(kafka_bootstrap, group, tp)
        held.set_result(None)
        await _committed_once(kafka_bootstrap, group, tp, 10)
    finally:
        stop.set()
        await running

    assert handled == list(range(10))
    assert most_busy == 1
    assert still == 2, "never committed past a record not yet acknowledged"


async def test_records_handed_over_and_not_acknowledged_are_bounded(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap, 1, 20)
    group = uuid.uuid4().hex
    acknowledgements: list[asyncio.Future[None]] = []

    async def handle(record: Record) -> Awaitable[None]:
        acknowledgement = asyncio.get_running_loop().create_future()
        acknowledgements.append(acknowledgement)
        return acknowledgement

    loop = _loop(kafka_bootstrap, topic, group, handle, slots=2, unrecorded=3)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await _until(lambda: len(acknowledgements) == 5)
        await asyncio.sleep(0.5)  # room for more, if the bound let it
        bounded = len(acknowledgements)
        acknowledgements[0].set_result(None)
        await _until(lambda: len(acknowledgements) == 6)
    finally:
        stop.set()
        for acknowledgement in acknowledgements:
            if not acknowledgement.done():
                acknowledgement.set_result(None)
        await running

    assert bounded == 5, "two slots and three records handed over, no more"


async def test_partitions_leaving_on_a_rebalance_are_settled_and_committed_first(
    kafka_bootstrap: str,
) -> None:
    """A second consumer joins while the first has records in hand: the first lets them finish
    and commits them before its partitions move, so no record is handled twice."""
    # Slow enough (0.2 s a record, two slots: 10 s alone) that the second joins mid-way.
    count = 100
    topic = await _topic(kafka_bootstrap, 2, count)
    group = uuid.uuid4().hex
    handled: list[tuple[str, int, int]] = []

    def handler(name: str) -> Callable[[Record], Awaitable[Awaitable[None]]]:
        async def handle(record: Record) -> Awaitable[None]:
            await asyncio.sleep(0.2)
            handled.append((name, record.partition, record.offset))
            return asyncio.sleep(0.1)  # a slow acknowledgement, outside the slot

        return handle

    first = _loop(kafka_bootstrap, topic, group, handler("first"), slots=2)
    second = _loop(kafka_bootstrap, topic, group, handler("second"), slots=2)
    stop = asyncio.Event()
    running = [asyncio.create_task(first.run(stop))]
    try:
        await _until(lambda: len(handled) >= 4)
        running.append(asyncio.create_task(second.run(stop)))
        await _until(lambda: second.joined)
        await _until(lambda: len({(p, o) for _, p, o in handled}) == count, timeout_s=120)
        await asyncio.sleep(1.0)  # anything handled again would show by now
    finally:
        stop.set()
        await asyncio.gather(*running)

    records = [(partition, offset) for _, partition, offset in handled]
    assert len(records) == len(set(records)) == count
    assert {name for name, _, _ in handled} == {"first", "second"}


async def test_a_stop_drains_what_is_in_hand_and_commits_it(kafka_bootstrap: str) -> None:
    topic = await _topic(kafka_bootstrap, 1, 40)
    tp, group = TopicPartition(topic, 0), uuid.uuid4().hex
    started: list[int] = []
    recorded: list[int] = []

    async def handle(record: Record) -> Awaitable[None]:
        started.append(record.offset)
        await asyncio.sleep(0.2)

        async def acknowledged() -> None:
            await asyncio.sleep(0.2)
            recorded.append(record.offset)

        return acknowledged()

    loop = _loop(kafka_bootstrap, topic, group, handle, slots=4, commit_interval_s=30)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await _until(lambda: len(started) >= 6)
    stop.set()
    await running
    committed = await _committed(kafka_bootstrap, group, tp)

    assert sorted(recorded) == sorted(started) == list(range(len(started)))
    assert committed == len(started), "everything in hand was recorded, then committed"


async def test_a_record_still_in_hand_when_the_settle_times_out_is_handled_again_by_the_new_owner(
    kafka_bootstrap: str,
) -> None:
    """The first delivery of each partition's first record is never acknowledged. A second
    consumer joins: the first waits ``settle_timeout_s`` for them, commits nothing past them and
    lets its partitions go, so whoever owns each partition next handles that record again and
    commits past it; every record is committed in the end."""
    count = 10
    topic = await _topic(kafka_bootstrap, 2, count)
    group = uuid.uuid4().hex
    seen: list[tuple[int, int]] = []
    never = asyncio.get_running_loop().create_future()

    def handler() -> Callable[[Record], Awaitable[Awaitable[None]]]:
        async def handle(record: Record) -> Awaitable[None]:
            first_time = (record.partition, record.offset) not in seen
            seen.append((record.partition, record.offset))
            return never if first_time and record.offset == 0 else asyncio.sleep(0)

        return handle

    limits: dict[str, Any] = {"slots": 2, "settle_timeout_s": 0.5, "drain_timeout_s": 0.5}
    first = _loop(kafka_bootstrap, topic, group, handler(), **limits)
    second = _loop(kafka_bootstrap, topic, group, handler(), **limits)
    stop = asyncio.Event()
    running = [asyncio.create_task(first.run(stop))]
    try:
        await _until(lambda: len(set(seen)) == count)
        running.append(asyncio.create_task(second.run(stop)))
        await _until(lambda: second.joined and seen.count((0, 0)) == seen.count((1, 0)) == 2)
        for partition in (0, 1):
            await _committed_once(kafka_bootstrap, group, TopicPartition(topic, partition), 5)
    finally:
        stop.set()
        await asyncio.gather(*running)

    assert sorted(set(seen)) == [(p, o) for p in (0, 1) for o in range(5)]


class _RebalancingConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """A real consumer whose first ``refusals`` commits fail as aiokafka's do against a Kafka
    group that is rebalancing (the embedded broker accepts commits then, so it is injected)."""

    def __init__(self, *args: Any, refusals: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refusals = refusals

    async def commit(self, offsets: Any = None) -> None:
        if self.refusals:
            self.refusals -= 1
            raise CommitFailedError("the group has already rebalanced")
        await super().commit(offsets)


async def test_a_commit_refused_during_a_rebalance_is_made_later_and_nothing_is_handled_twice(
    kafka_bootstrap: str,
) -> None:
    topic = await _topic(kafka_bootstrap, 1, 20)
    tp, group = TopicPartition(topic, 0), uuid.uuid4().hex
    handled: list[int] = []

    async def handle(record: Record) -> None:
        await asyncio.sleep(0.01)
        handled.append(record.offset)

    consumer = _RebalancingConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        refusals=3,
    )
    limits = LoopLimits(
        slots=2, unrecorded=8, commit_interval_s=0.1, settle_timeout_s=5, drain_timeout_s=5
    )
    loop = WorkLoop(consumer, [topic], handle, limits, unreadable=_no_unreadable_records)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    try:
        await _committed_once(kafka_bootstrap, group, tp, 20)
    finally:
        stop.set()
        await running  # raised CommitFailedError (the loop restarted) before

    assert consumer.refusals == 0
    assert sorted(handled) == list(range(20)), "each record handled once"
