"""Events per second through the LangGraph runner's Kafka bridge, next to its baselines.

The bridge's ceiling: ``workflow.triggered`` events for a trivial workflow (the five no-op steps
of ``bench.langgraph_runner``, SQLite checkpoints with ``durability=sync`` as by default) go in
on ``workflow-events``; the rate runs from the first event sent to the last outcome read on
``workflow-results``, after the bridge has joined its group. Baselines, same broker and machine:

- the same runs without Kafka: ``RunManager.start`` + ``wait`` at the same concurrency, in
  process, on the same persistence (what the bridge adds is the consume loop, the event's
  validation and dedup, and the outcome's publication);
- a bare aiokafka consume-produce-commit loop over the same events (no runner at all).

Run: ``.venv/bin/python -m bench.bridge_throughput [--events N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from bench.langgraph_runner import through_runner
from bench.processor_throughput import Results, bare_loop_rate, fresh_topics, send_messages
from bench.scratch import broker_in_scratch
from libs.common.kit.logging import configure_logging
from services.langgraph_runner.app import create_app
from services.langgraph_runner.settings import RunnerSettings


def events(count: int) -> list[tuple[bytes, bytes]]:
    """``workflow.triggered`` events for the bench chain, keyed by ``workflow_run_id``."""
    found = []
    for n in range(count):
        run_id = f"bench__{uuid.uuid4().hex[:8]}-{n}"
        event = {
            "event_id": str(uuid.uuid4()),
            "event_type": "workflow.triggered",
            "timestamp": "2026-12-02T10:00:00.000000",
            "source": "bench",
            "workflow_id": "bench_chain",
            "workflow_run_id": run_id,
            "payload": {"start": n},
            "metadata": {"environment": "bench"},
        }
        found.append((run_id.encode(), msgspec.json.encode(event)))
    return found


def runner_settings(folder: Path, concurrency: int, **kafka: Any) -> RunnerSettings:
    """The bench chain's runner, its files in ``folder``; ``kafka``: its bridge's settings."""
    return RunnerSettings(
        checkpoint_path=str(folder / "checkpoints.db"),
        store_path=str(folder / "runs.db"),
        extra_workflows=["bench.langgraph_runner:CHAIN"],
        max_concurrent_runs=concurrency,
        max_events_in_flight=concurrency,
        commit_interval_s=0.5,
        log_level="WARNING",
        **kafka,
    )


@asynccontextmanager
async def bridged_runner(
    bootstrap: str, folder: Path, concurrency: int
) -> AsyncIterator[tuple[str, str]]:
    """The runner in this process with its bridge on fresh topics (events, results), in a
    group of its own, from when the group gave it the events' partitions (a join takes
    seconds on any broker) until the block ends."""
    source, sink, dlq = await fresh_topics(bootstrap)
    settings = runner_settings(
        folder,
        concurrency,
        bootstrap_servers=bootstrap,
        events_topic=source,
        results_topic=sink,
        dlq_topic=dlq,
        group_id=uuid.uuid4().hex,
    )
    async with AsyncTestClient(app=create_app(settings)) as runner:
        while not (await runner.get("/health")).json()["details"]["kafka"]["partitions"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        yield source, sink


async def bridge_rate(bootstrap: str, folder: Path, count: int, concurrency: int) -> float:
    """From the first event sent to the last outcome read, the bridge in steady state."""
    async with (
        bridged_runner(bootstrap, folder, concurrency) as (source, sink),
        Results(bootstrap, sink) as results,
    ):
        started = time.perf_counter()
        await send_messages(bootstrap, source, events(count))
        await results.wait_for(count)
        return count / (time.perf_counter() - started)


async def runs_rate(folder: Path, count: int, concurrency: int) -> float:
    """The same runs, started and awaited in process, ``concurrency`` at once."""
    async with AsyncExitStack() as stack:
        run_once = await through_runner(stack, runner_settings(folder, concurrency))
        slots = asyncio.Semaphore(concurrency)

        async def bounded() -> None:
            async with slots:
                await run_once()

        # Warmed up as the bridge is while its consumer joins (store, checkpointer, graph).
        await asyncio.gather(*(bounded() for _ in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(count)))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    configure_logging("WARNING")
    with broker_in_scratch() as (work, broker):
        bootstrap = broker.bootstrap_servers
        bare = asyncio.run(bare_loop_rate(bootstrap, args.events, events(args.events)))
        runs = asyncio.run(runs_rate(work / "runs", args.events, args.concurrency))
        bridged = asyncio.run(
            bridge_rate(bootstrap, work / "bridge", args.events, args.concurrency)
        )
    print(
        f"bare aiokafka loop {bare:8.0f} events/s | the same runs without Kafka {runs:6.0f} "
        f"runs/s | through the bridge {bridged:6.0f} events/s | ratios {bridged / runs:.2f} "
        f"(vs runs) and {bridged / bare:.3f} (vs bare loop); {args.events} events, "
        f"concurrency {args.concurrency}"
    )


if __name__ == "__main__":
    main()
