"""Discovery with 10,000 registered agents: the registry against a plain in-memory filter.

Two figures, each a ratio against a baseline run in the same process:

1. in-process: ``Catalog.discover`` (capability index) vs a list comprehension over the same
   10,000 agents (the baseline a hand-written registry would use);
2. over HTTP: ``POST /discover`` on a real uvicorn registry process, latency p50/p99 and
   requests/s with concurrent clients, next to the same baseline filter.

Run: ``.venv/bin/python -m bench.registry_discovery`` (about a minute).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec

from libs.common.kit.logging import configure_logging
from libs.common.schemas.agents import AgentDefinition, DiscoveryRequest, RegisteredAgent
from services.registry.catalog import Catalog
from services.registry.store import SQLiteAgentStore
from tests.support.processes import ServiceProcess, free_port

AGENTS = 10_000
CAPABILITIES = [f"cap_{i:03d}" for i in range(200)]
ROLES = ["execution", "coordinator", "reviewer", "router"]
ROUNDS = 2_000
HTTP_LATENCY_REQUESTS = 1_000
HTTP_REQUESTS = 2_000
HTTP_CONCURRENCY = 16

QUERIES = [
    DiscoveryRequest(capabilities=["cap_007"]),
    DiscoveryRequest(capabilities=["cap_010", "cap_011"], match="any"),
    DiscoveryRequest(capabilities=["cap_020", "cap_021"], match="all"),
    DiscoveryRequest(capabilities=["cap_030"], role="coordinator", tier=1),
]


def make_agents(seed: int = 7) -> list[AgentDefinition]:
    rng = random.Random(seed)
    return [
        AgentDefinition(
            agent_id=f"agent_{i:05d}",
            name=f"Agent {i}",
            tier=rng.randrange(4),
            role=rng.choice(ROLES),
            capabilities=rng.sample(CAPABILITIES, 4),
            endpoint=f"http://127.0.0.1:{20_000 + i}",
        )
        for i in range(AGENTS)
    ]


def baseline_filter(agents: list[RegisteredAgent], q: DiscoveryRequest) -> list[RegisteredAgent]:
    """What a registry without an index does: test every agent against the query."""
    wanted = set(q.capabilities)
    return sorted(
        (
            a
            for a in agents
            if (
                wanted.issubset(a.capabilities)
                if q.match == "all"
                else not wanted.isdisjoint(a.capabilities)
            )
            and (q.role is None or a.role == q.role)
            and (q.tier is None or a.tier == q.tier)
            and (not q.healthy_only or a.status == "passing")
        ),
        key=lambda a: a.agent_id,
    )


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[int(len(ordered) * 0.99) - 1]


def time_calls(call: Callable[[DiscoveryRequest], object], rounds: int) -> list[float]:
    samples = []
    for i in range(rounds):
        query = QUERIES[i % len(QUERIES)]
        started = time.perf_counter()
        call(query)
        samples.append(time.perf_counter() - started)
    return samples


async def in_process(definitions: list[AgentDefinition]) -> tuple[list[float], list[float]]:
    store = SQLiteAgentStore(":memory:")
    await store.open()
    catalog = Catalog(store, default_ttl_s=0, deregister_critical_after_s=60)
    await catalog.load()
    for definition in definitions:
        await catalog.register(definition)
    records = catalog.all()
    for query in QUERIES:
        assert catalog.discover(query) == baseline_filter(records, query)
    ours = time_calls(catalog.discover, ROUNDS)
    base = time_calls(lambda q: baseline_filter(records, q), ROUNDS)
    await store.close()
    return ours, base


async def over_http(definitions: list[AgentDefinition]) -> tuple[list[float], float]:
    """Latency from one client at a time; requests/s from HTTP_CONCURRENCY clients."""
    with tempfile.TemporaryDirectory() as tmp:
        process = ServiceProcess(
            "services.registry.registry_service:app",
            free_port(),
            {
                "REGISTRY_DATABASE_URL": f"sqlite:///{tmp}/registry.db",
                "REGISTRY_DEFAULT_TTL_S": "0",
                "LOG_LEVEL": "WARNING",
            },
            Path(tmp) / "registry.log",
        ).start()
        try:
            limits = httpx.Limits(max_connections=HTTP_CONCURRENCY)
            async with httpx.AsyncClient(base_url=process.url, limits=limits) as http:
                semaphore = asyncio.Semaphore(HTTP_CONCURRENCY)

                async def register(d: AgentDefinition) -> None:
                    async with semaphore:
                        response = await http.post("/register", content=msgspec.json.encode(d))
                        response.raise_for_status()

                await asyncio.gather(*(register(d) for d in definitions))
                bodies = [msgspec.json.encode(q) for q in QUERIES]
                headers = {"content-type": "application/json"}

                async def discover(i: int) -> float:
                    async with semaphore:
                        started = time.perf_counter()
                        response = await http.post(
                            "/discover", content=bodies[i % len(bodies)], headers=headers
                        )
                        response.raise_for_status()
                        return time.perf_counter() - started

                samples = [await discover(i) for i in range(HTTP_LATENCY_REQUESTS)]
                started = time.perf_counter()
                await asyncio.gather(*(discover(i) for i in range(HTTP_REQUESTS)))
                elapsed = time.perf_counter() - started
        finally:
            process.stop()
    return samples, HTTP_REQUESTS / elapsed


def main() -> None:
    configure_logging("WARNING")
    definitions = make_agents()
    ours, base = asyncio.run(in_process(definitions))
    (o50, o99), (b50, b99) = percentiles(ours), percentiles(base)
    print(f"agents={AGENTS} queries={len(QUERIES)} rounds={ROUNDS}")
    print(f"in-process discover      p50 {o50 * 1e6:8.1f} us  p99 {o99 * 1e6:8.1f} us")
    print(f"baseline list filter     p50 {b50 * 1e6:8.1f} us  p99 {b99 * 1e6:8.1f} us")
    print(f"ratio baseline/ours      p50 {b50 / o50:8.1f} x  p99 {b99 / o99:8.1f} x")

    samples, rate = asyncio.run(over_http(definitions))
    h50, h99 = percentiles(samples)
    print(
        f"HTTP POST /discover      p50 {h50 * 1e3:8.2f} ms  p99 {h99 * 1e3:8.2f} ms  "
        f"(one client, {HTTP_LATENCY_REQUESTS} requests)"
    )
    print(f"HTTP throughput          {rate:8,.0f} req/s ({HTTP_CONCURRENCY} clients)")
    print(f"ratio HTTP/baseline      p50 {h50 / b50:8.1f} x  p99 {h99 / b99:8.1f} x")


if __name__ == "__main__":
    main()
