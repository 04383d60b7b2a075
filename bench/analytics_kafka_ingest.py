"""Usage events per second from Kafka into the collector, next to a bare aiokafka consumer.

Both read the same topic on the same broker from the start in a group of their own. The bare
consumer only counts records; the collector decodes and validates each one, stores each batch
in DuckDB, then commits. Rates are measured in steady state, from 10% to 100% of the records,
so that process start and the group join are left out of both. Each round has a topic and a
DuckDB file of its own; the last line gives the median of the rounds' ratios.

Run: ``.venv/bin/python -m bench.analytics_kafka_ingest [--events 200000] [--rounds 3]``
(about a minute a round); ``--bad-share 0.01``: that share of the records is no usage event
(each goes to the collector's DLQ, the broker's acknowledgement awaited before the commit),
spread evenly. Uses ``KAFKA_BOOTSTRAP_SERVERS`` if set, else starts the embedded
broker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.process_stats import cpu_seconds, peak_resident_mib
from libs.common.kafka.broker import EmbeddedBroker
from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.usage import UsageEvent
from services.analytics.settings import AnalyticsSettings
from tests.support.processes import ServiceProcess, free_port

PARTITIONS = 3
# The collector's defaults, given to both.
BATCH_MAX = AnalyticsSettings().batch_max
FETCH_PARTITION_BYTES = AnalyticsSettings().fetch_partition_bytes


def events(count: int, *, in_order: bool = False) -> list[bytes]:
    """Usage events over the last 24 hours, in random order of time (the worst case for the
    collector's duplicate check, whose probe then reads every stored row), or ``in_order``
    (as calls are reported live: the probe reads only the newest rows)."""
    rng = random.Random(7)
    now = datetime.now(UTC)
    made = [
        UsageEvent(
            event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
            timestamp=now - timedelta(seconds=rng.uniform(0, 86_400)),
            service="provider_router",
            provider="local",
            model=f"model-{rng.randrange(8)}",
            status="ok",
            prompt_tokens=rng.randint(5, 2000),
            completion_tokens=rng.randint(0, 500),
            latency_ms=rng.uniform(20, 5000),
            cost_usd=round(rng.uniform(0, 0.01), 10),
            workflow_id=f"workflow_{rng.randrange(10)}",
            desk=f"desk-{rng.randrange(4)}",
        )
        for _ in range(count)
    ]
    if in_order:
        made.sort(key=lambda event: event.timestamp)
    return [msgspec.json.encode(event) for event in made]


NOT_AN_EVENT = b'{"event_id": "bench-bad", "tokens": "many"}'


def spoiled(values: list[bytes], share: float) -> list[bytes]:
    """``values`` with every ``1 / share``-th one replaced by a record that does not decode."""
    if share <= 0:
        return values
    every = max(1, round(1 / share))
    return [NOT_AN_EVENT if n % every == every - 1 else v for n, v in enumerate(values)]


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20)
    await producer.start()
    try:
        pending = [await producer.send(topic, value=v) for v in values]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


class Steady(NamedTuple):
    """Between 10% and 100% of the records: records per second, and CPU seconds per 100,000
    records (the process's own CPU, all its threads)."""

    rate: float
    cpu_per_100k: float


Mark = tuple[float, int, float]  # (wall clock, records so far, process CPU seconds so far)


def steady(marks: list[Mark], total: int) -> Steady:
    start = next(m for m in marks if m[1] >= total * 0.1)
    end = next(m for m in marks if m[1] >= total)
    records = max(end[1] - start[1], 1)
    return Steady(records / max(end[0] - start[0], 1e-9), (end[2] - start[2]) / records * 100_000)


async def bare_consumer(bootstrap: str, topic: str, total: int) -> Steady:
    """Fetch and commit, batches as large as the collector's; CPU from this process (which
    does nothing else meanwhile)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
    )
    await consumer.start()
    seen, marks = 0, []
    try:
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=BATCH_MAX)
            seen += sum(len(records) for records in batches.values())
            if batches:
                await consumer.commit()
            marks.append((time.perf_counter(), seen, time.process_time()))
    finally:
        await consumer.stop()
    return steady(marks, total)


async def collector_rate(
    process: ServiceProcess, bootstrap: str, group: str, topic: str, total: int
) -> Steady:
    """Events stored, read as the offsets the collector's group has committed (it commits a
    batch only once it is stored), and the process's CPU, read from ``/proc``: every 20 ms, as
    a round stores its events in about a second (every 100 ms made the rate move in steps of
    a tenth). Measured from outside, so that the measuring costs the collector nothing (as it
    costs the bare consumer nothing)."""
    marks: list[Mark] = []
    # In the collector's group without joining it (nothing subscribed): reads its commits only.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await reader.start()
    partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    try:
        stored = 0
        deadline = time.monotonic() + 600
        while stored < total and time.monotonic() < deadline:
            committed = await asyncio.gather(*(reader.committed(tp) for tp in partitions))
            stored = sum(offset or 0 for offset in committed)
            marks.append((time.perf_counter(), stored, cpu_seconds(process.pid)))
            await asyncio.sleep(0.02)
    finally:
        await reader.stop()
    return steady(marks, total)


async def run(
    bootstrap: str, count: int, tmp: Path, *, in_order: bool, bad_share: float
) -> tuple[Steady, Steady]:
    """One round: the collector's and the bare consumer's figures."""
    run_id = uuid.uuid4().hex[:6]
    topic = f"bench-usage-{run_id}"
    others = {f"bench-{name}-{run_id}": 1 for name in ("wf", "results", "docs-dlq", "dlq")}
    await ensure_topics(bootstrap, {topic: PARTITIONS, **others})
    values = spoiled(events(count, in_order=in_order), bad_share)
    await produce(bootstrap, topic, values)

    bare = await bare_consumer(bootstrap, topic, count)
    names = list(others)
    group = f"bench-collector-{run_id}"
    collector = ServiceProcess(
        "services.analytics.app:app",
        free_port(),
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ANALYTICS_DB_PATH": str(tmp / f"collector-{run_id}.duckdb"),
            "ANALYTICS_USAGE_TOPIC": topic,
            "ANALYTICS_WORKFLOW_RESULTS_TOPIC": names[0],
            "ANALYTICS_LLM_RESULTS_TOPIC": names[1],
            "ANALYTICS_DOCUMENTS_DLQ_TOPIC": names[2],
            "ANALYTICS_DLQ_TOPIC": names[3],
            "ANALYTICS_GROUP_ID": group,
            "ANALYTICS_RAW_RETENTION_S": "0",
            "ANALYTICS_BATCH_MAX": str(BATCH_MAX),
            "LOG_LEVEL": "WARNING",
        },
        tmp / f"collector-{run_id}.log",
    ).start()
    try:
        stored = await collector_rate(collector, bootstrap, group, topic, count)
        peak_mib = peak_resident_mib(collector.pid)
    finally:
        collector.stop()
    print(
        f"collector (decode, store, commit): {stored.rate:,.0f} events/s, "
        f"{stored.cpu_per_100k:.2f} CPU s/100k   bare aiokafka consumer: {bare.rate:,.0f} "
        f"records/s, {bare.cpu_per_100k:.2f} CPU s/100k   ratio {stored.rate / bare.rate:.2f} "
        f"(CPU: {bare.cpu_per_100k / stored.cpu_per_100k:.2f}); collector peak {peak_mib:.0f} MiB",
        flush=True,
    )
    return stored, bare


async def rounds(
    bootstrap: str, count: int, times: int, tmp: Path, *, in_order: bool, bad_share: float
) -> None:
    bad = f", {bad_share:.1%} of them no usage event" if bad_share > 0 else ""
    print(
        f"{count:,} usage events ({'in order' if in_order else 'random order'} of time{bad}) on "
        f"{PARTITIONS} partitions, batches of {BATCH_MAX:,}, {times} rounds",
        flush=True,
    )
    ratios, cpu_ratios = [], []
    for _ in range(times):
        stored, bare = await run(bootstrap, count, tmp, in_order=in_order, bad_share=bad_share)
        ratios.append(stored.rate / bare.rate)
        cpu_ratios.append(bare.cpu_per_100k / stored.cpu_per_100k)
    print(
        f"median ratio {statistics.median(ratios):.2f} "
        f"(CPU per record, bare over collector: {statistics.median(cpu_ratios):.2f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--in-order", action="store_true", help="events in order of time, as live traffic"
    )
    parser.add_argument(
        "--bad-share", type=float, default=0.0, help="share of records that are no usage event"
    )
    args = parser.parse_args()
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="pas-bench-kafka-"))
        bootstrap = (
            configured or stack.enter_context(EmbeddedBroker(port=free_port())).bootstrap_servers
        )
        asyncio.run(
            rounds(
                bootstrap,
                args.events,
                args.rounds,
                Path(tmp),
                in_order=args.in_order,
                bad_share=args.bad_share,
            )
        )


if __name__ == "__main__":
    main()
