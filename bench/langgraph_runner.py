"""Runs per second and per-step overhead through the LangGraph runner, next to the same compiled
graph invoked directly, with and without checkpointing.

The graph: a chain of ``STEPS`` trivial nodes (no LLM), so what is measured is orchestration.
Modes, all in one process and event loop, each run on a fresh thread id:

- ``direct``: ``graph.ainvoke`` without a checkpointer (the floor);
- ``direct + sqlite``: ``graph.ainvoke`` with AsyncSqliteSaver on a file, durability ``sync``
  (what the runner checkpoints with by default);
- ``runner``: ``RunManager.start`` + ``wait`` (checkpoints on the same SQLite setup, the run
  record written at every step, usage metering, events for stream listeners);
- ``runner, checkpoints in memory``: the same with ``:memory:`` SQLite for checkpoints and run
  records (the runner's own overhead without disk);
- ``runner over HTTP``: ``POST /workflows/{id}/runs?wait=true`` through Litestar in-process.

Sequential (one run at a time: latency) and concurrent (``CONCURRENCY`` in flight: runs/s).
Per-step overhead = (mean run time of the mode - mean run time of ``direct``) / ``STEPS``.

Run: ``.venv/bin/python -m bench.langgraph_runner [--runs N] [--rounds R]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypedDict

import aiosqlite
import msgspec
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph
from litestar.testing import AsyncTestClient

from libs.common.kit.logging import configure_logging
from services.langgraph_runner.app import create_app
from services.langgraph_runner.catalog import Catalog, build_deps
from services.langgraph_runner.definitions import RequestedParameters
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.runs import RunManager
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.workflows import RunContext, WorkflowDeps, WorkflowSpec

STEPS = 5
CONCURRENCY = 16


class ChainInput(msgspec.Struct):
    start: int = 0


class ChainState(TypedDict):
    value: int


def _step(state: ChainState) -> ChainState:
    return {"value": state["value"] + 1}


def build(_: WorkflowDeps) -> StateGraph[ChainState, RunContext, Any, Any]:
    graph = StateGraph(ChainState, context_schema=RunContext)
    previous = START
    for index in range(STEPS):
        graph.add_node(f"step_{index}", _step)
        graph.add_edge(previous, f"step_{index}")
        previous = f"step_{index}"
    graph.add_edge(previous, END)
    return graph


CHAIN = WorkflowSpec(
    id="bench_chain",
    title="Bench chain",
    description=f"{STEPS} trivial steps",
    input_type=ChainInput,
    build=build,
    initial_state=lambda chain, _: {"value": chain.start},
    output=lambda state: {"value": state["value"]},
)

RunOnce = Callable[[], Awaitable[None]]


class Figures(msgspec.Struct):
    mode: str
    mean_ms: float
    p99_ms: float
    sequential_rps: float
    concurrent_rps: float


async def measure(mode: str, run_once: RunOnce, runs: int) -> Figures:
    for _ in range(max(runs // 10, 5)):  # warm up
        await run_once()
    latencies = []
    started = time.perf_counter()
    for _ in range(runs):
        begin = time.perf_counter()
        await run_once()
        latencies.append(time.perf_counter() - begin)
    sequential = time.perf_counter() - started
    slots = asyncio.Semaphore(CONCURRENCY)

    async def bounded() -> None:
        async with slots:
            await run_once()

    started = time.perf_counter()
    await asyncio.gather(*(bounded() for _ in range(runs)))
    concurrent = time.perf_counter() - started
    latencies.sort()
    return Figures(
        mode=mode,
        mean_ms=statistics.fmean(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
        sequential_rps=runs / sequential,
        concurrent_rps=runs / concurrent,
    )


def _settings(folder: Path, *, in_memory: bool = False) -> RunnerSettings:
    return RunnerSettings(
        checkpoint_path=":memory:" if in_memory else str(folder / "checkpoints.db"),
        store_path=":memory:" if in_memory else str(folder / "runs.db"),
        extra_workflows=["bench.langgraph_runner:CHAIN"],
        max_concurrent_runs=CONCURRENCY,
        log_level="WARNING",
    )


async def _ainvoke(graph: Any, durability: str | None) -> None:
    if durability is None:
        await graph.ainvoke({"value": 0})
    else:
        config = {"configurable": {"thread_id": uuid.uuid4().hex}}
        await graph.ainvoke({"value": 0}, config, durability=durability)


async def direct_checkpointed(stack: AsyncExitStack, folder: Path) -> RunOnce:
    conn = await stack.enter_async_context(aiosqlite.connect(folder / "direct.db"))
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=NORMAL")
    saver = AsyncSqliteSaver(conn)
    await saver.setup()
    graph = build(build_deps(RunnerSettings())).compile(checkpointer=saver)
    return lambda: _ainvoke(graph, "sync")


async def through_runner(stack: AsyncExitStack, settings: RunnerSettings) -> RunOnce:
    catalog = Catalog([CHAIN], build_deps(settings))
    manager = RunManager(catalog, settings, RequestedParameters(), RunnerMetrics())
    checkpointer, store = await stack.enter_async_context(open_persistence(settings))
    catalog.bind(checkpointer)
    manager.attach(store)
    stack.push_async_callback(manager.close)

    async def run_once() -> None:
        record = await manager.start("bench_chain", {"start": 0})
        done = await manager.wait(record.run.run_id)
        assert done.run.status == "success", done.run.error

    return run_once


async def over_http(stack: AsyncExitStack, settings: RunnerSettings) -> RunOnce:
    client = await stack.enter_async_context(AsyncTestClient(app=create_app(settings)))

    async def run_once() -> None:
        response = await client.post(
            "/workflows/bench_chain/runs?wait=true", json={"input": {"start": 0}}
        )
        assert response.json()["status"] == "success", response.text

    return run_once


async def main(runs: int, rounds: int) -> None:
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        async with AsyncExitStack() as stack:
            floor = build(build_deps(RunnerSettings())).compile()
            modes: dict[str, RunOnce] = {
                "direct (no checkpointer)": lambda: _ainvoke(floor, None),
                "direct + sqlite checkpoints": await direct_checkpointed(stack, folder),
                "runner (sqlite, sync)": await through_runner(stack, _settings(folder / "a")),
                "runner (checkpoints in memory)": await through_runner(
                    stack, _settings(folder / "b", in_memory=True)
                ),
                "runner over HTTP (in-process)": await over_http(stack, _settings(folder / "c")),
            }
            # Rounds interleave the modes, and the median round counts: the machine is shared.
            measured: dict[str, list[Figures]] = {mode: [] for mode in modes}
            for _ in range(rounds):
                for mode, run_once in modes.items():
                    measured[mode].append(await measure(mode, run_once, runs))
    results = [_median(figures) for figures in measured.values()]
    floor_ms, checkpointed_ms = results[0].mean_ms, results[1].mean_ms
    print(
        f"{STEPS}-step graph, {runs} runs per mode and round, median of {rounds} rounds, "
        f"concurrency {CONCURRENCY} for the concurrent rate"
    )
    print(
        f"{'mode':32} {'mean ms':>8} {'p99 ms':>8} {'runs/s 1':>9} {'runs/s 16':>10} "
        f"{'step ovh ms':>11} {'x direct':>9} {'x direct+ckpt':>14}"
    )
    for f in results:
        print(
            f"{f.mode:32} {f.mean_ms:8.2f} {f.p99_ms:8.2f} {f.sequential_rps:9.0f} "
            f"{f.concurrent_rps:10.0f} {(f.mean_ms - floor_ms) / STEPS:11.3f} "
            f"{f.mean_ms / floor_ms:9.2f} {f.mean_ms / checkpointed_ms:14.2f}"
        )


def _median(figures: list[Figures]) -> Figures:
    return Figures(
        mode=figures[0].mode,
        mean_ms=statistics.median(f.mean_ms for f in figures),
        p99_ms=statistics.median(f.p99_ms for f in figures),
        sequential_rps=statistics.median(f.sequential_rps for f in figures),
        concurrent_rps=statistics.median(f.concurrent_rps for f in figures),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.rounds))
