"""Documents per second through one processor replica and through three in one consumer group,
side by side on the same broker and the same backend: an OpenAI-compatible responder taking
200 ms a call, calls overlapping (as vLLM or llama.cpp's server batch them).

Each replica is its own process (``services.kafka_llm_processor.app``, as deployed), at the
same concurrency. The rate runs from the first document sent to the last result received,
after every replica has joined the group (joins are not throughput). Rounds alternate one and
three replicas, so drift on a shared machine falls on both.

Run: ``.venv/bin/python -m bench.processor_scale_out [--documents 3000 --rounds 2]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from pathlib import Path

import httpx

from bench.processor_throughput import Results, fresh_topics, serve_responder, summaries
from bench.scratch import broker_in_scratch
from services.kafka_llm_processor.send_samples import send
from tests.support.processes import ServiceProcess, free_port

CONCURRENCY = 16


def start_replicas(
    count: int, bootstrap: str, llm_url: str, topics: tuple[str, str, str], work: Path
) -> list[ServiceProcess]:
    source, sink, dlq = topics
    group = f"scale-{uuid.uuid4().hex[:8]}"
    return [
        ServiceProcess(
            "services.kafka_llm_processor.app:app",
            free_port(),
            {
                "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
                "INPUT_TOPIC": source,
                "OUTPUT_TOPIC": sink,
                "DLQ_TOPIC": dlq,
                "LLM_URL": llm_url,
                "PROCESSOR_GROUP_ID": group,
                "PROCESSOR_CONCURRENCY": str(CONCURRENCY),
                "PROCESSOR_SPILL_DIR": str(work / f"spill-{group}-{i}"),
                "LOG_LEVEL": "WARNING",
            },
            work / f"{group}-{i}.log",
        ).start()
        for i in range(count)
    ]


async def _until_partitions_spread(replicas: list[ServiceProcess], partitions: int) -> None:
    """Every replica reports its partitions in /health: wait until each holds some and
    together they hold them all once."""
    async with httpx.AsyncClient() as http:
        while True:
            held = [
                (await http.get(f"{r.url}/health")).json()["details"].get("partitions") or []
                for r in replicas
            ]
            if all(held) and sorted(p for h in held for p in h) == list(range(partitions)):
                return
            await asyncio.sleep(0.2)


async def rate(bootstrap: str, llm_url: str, replicas: int, count: int, work: Path) -> float:
    topics = await fresh_topics(bootstrap)
    processes = start_replicas(replicas, bootstrap, llm_url, topics, work)
    try:
        await _until_partitions_spread(processes, 6)
        async with Results(bootstrap, topics[1]) as results:
            started = time.perf_counter()
            await send(bootstrap, topics[0], summaries(count))
            await results.wait_for(count)
            return count / (time.perf_counter() - started)
    finally:
        for process in processes:
            process.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates: dict[int, list[float]] = {1: [], 3: []}
    with (
        broker_in_scratch() as (work, broker),
        serve_responder(0.2, work) as backend,
    ):
        for _ in range(args.rounds):
            for replicas, measured_rates in rates.items():
                measured = asyncio.run(
                    rate(
                        broker.bootstrap_servers,
                        f"{backend.url}/v1",
                        replicas,
                        args.documents,
                        work,
                    )
                )
                measured_rates.append(measured)
                print(f"{replicas} replica(s): {measured:7.1f} docs/s")
    one, three = (statistics.median(rates[n]) for n in (1, 3))
    print(
        f"median of {args.rounds} rounds, {args.documents} documents, concurrency "
        f"{CONCURRENCY} a replica: one replica {one:.1f} docs/s, three {three:.1f} docs/s, "
        f"ratio {three / one:.2f}"
    )


if __name__ == "__main__":
    main()
