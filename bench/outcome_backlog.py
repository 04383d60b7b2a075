"""Outcomes per second a runner publishes from a backlog, next to a bare producer.

A backlog of ended runs whose outcomes were never reported (Kafka was away while they ended, or
their replica died before it reported them) waits in the run store (SQLite). Two ways it is
drained:

- restart: the runner starts again under the name that holds them (its outbox reads them at
  start);
- takeover: another replica starts beside the store, the dead one's leases expired (it claims
  them, then reports them).

The rate runs from the runner's start (its app's lifespan entered: stores opened, leases
claimed) to the last outcome read on ``workflow-results``. Baseline, same broker and events: a
bare aiokafka producer publishing the same outcome events (``acks=all``, all sent, then
flushed), what the broker takes from one process. Run:
``.venv/bin/python -m bench.outcome_backlog [--runs 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer
from litestar.testing import AsyncTestClient

from bench.processor_throughput import Results, fresh_topics
from bench.scratch import broker_in_scratch
from libs.common.kit.logging import configure_logging
from libs.common.schemas.workflows import RunStatus
from services.langgraph_runner.app import create_app
from services.langgraph_runner.outcomes import outcome_event
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import RunRecord

DEAD_REPLICA = "runner-gone"


def backlog(count: int, owner: str) -> list[RunRecord]:
    """``count`` runs that ended, Kafka-triggered, their outcomes not reported yet."""
    at = datetime.now(UTC)
    return [
        RunRecord(
            run=RunStatus(
                run_id=f"run-{n:06d}",
                workflow_id="bench_chain",
                status="success",
                input={"start": n},
                output={"value": n},
                created_at=at,
                updated_at=at,
                started_at=at,
                finished_at=at,
                event_id=f"event-{n:06d}",
                workflow_run_id=f"bench__{n:06d}",
            ),
            owner=owner,
        )
        for n in range(count)
    ]


async def store_backlog(settings: RunnerSettings, records: list[RunRecord]) -> None:
    async with open_persistence(settings) as (_, store):
        for record in records:
            await store.create(record)


async def runner_rate(settings: RunnerSettings, count: int) -> float:
    """From the runner's start to the ``count``-th outcome on its results topic."""
    async with Results(settings.bootstrap_servers or "", settings.results_topic) as results:
        started = time.perf_counter()
        async with AsyncTestClient(app=create_app(settings)):
            await results.wait_for(count)
            return count / (time.perf_counter() - started)


async def drain_rate(bootstrap: str, folder: Path, count: int, *, takeover: bool) -> float:
    events, results, dlq = await fresh_topics(bootstrap)
    settings = RunnerSettings(
        checkpoint_path=str(folder / "checkpoints.db"),
        store_path=str(folder / "runs.db"),
        bootstrap_servers=bootstrap,
        events_topic=events,
        results_topic=results,
        dlq_topic=dlq,
        extra_workflows=["bench.langgraph_runner:CHAIN"],
        log_level="WARNING",
    )
    if takeover:
        # Written under leases that have expired by the time the other replica starts.
        short = msgspec.structs.replace(settings, lease_ttl_s=0.05, lease_renew_s=0.01)
        await store_backlog(short, backlog(count, DEAD_REPLICA))
        await asyncio.sleep(0.2)
    else:
        await store_backlog(settings, backlog(count, settings.instance))
    return await runner_rate(settings, count)


async def bare_rate(bootstrap: str, count: int) -> float:
    """The same outcome events from a bare producer, all sent, then flushed."""
    _, topic, _ = await fresh_topics(bootstrap)
    messages = [
        (event.workflow_run_id.encode(), msgspec.json.encode(event))
        for event in map(outcome_event, backlog(count, DEAD_REPLICA))
    ]
    async with Results(bootstrap, topic) as results:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        await producer.start()
        try:
            started = time.perf_counter()
            sent = [await producer.send(topic, value, key=key) for key, value in messages]
            await asyncio.gather(*sent)
            await results.wait_for(count)
            return count / (time.perf_counter() - started)
        finally:
            await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    configure_logging("WARNING")
    with broker_in_scratch() as (work, broker):
        bootstrap = broker.bootstrap_servers
        bare = asyncio.run(bare_rate(bootstrap, args.runs))
        restart = asyncio.run(drain_rate(bootstrap, work / "restart", args.runs, takeover=False))
        takeover = asyncio.run(drain_rate(bootstrap, work / "takeover", args.runs, takeover=True))
    print(
        f"bare producer {bare:7.0f} outcomes/s | restart {restart:6.0f} outcomes/s "
        f"({restart / bare:.2f}) | takeover {takeover:6.0f} outcomes/s ({takeover / bare:.2f}); "
        f"{args.runs} outcomes waiting"
    )


if __name__ == "__main__":
    main()
