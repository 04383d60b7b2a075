"""Version reads and assignment latency: the version manager against gitpython direct.

The baseline is what a runner without the version manager would do: open the git repository
with gitpython in its own process and read a version's definition from its tag
(``repo.tags["<id>-v<N>"].commit.tree / "workflows/<id>.json"``, decoded with msgspec). The
version manager runs as a real uvicorn process on the same repository, and is read over HTTP:

1. version reads, ``GET /workflows/{id}/versions/{v}``: latency from one client and reads/s
   from ``CONCURRENCY`` clients, next to the baseline's latency and reads/s in one thread;
2. assignment, ``POST /experiments/{id}/assign``: latency p50/p99 from one client, next to the
   baseline read (what a run pays for its definition without the service) and to the bare
   in-process hash that makes the assignment.

Run: ``.venv/bin/python -m bench.versioning_reads [--reads 2000]`` (about 20 s).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import httpx
import msgspec
from git import Repo

from libs.common.kit.logging import configure_logging
from libs.common.schemas.versioning import Experiment, WorkflowDefinition, WorkflowVersion
from tests.support.processes import ServiceProcess, free_port

WORKFLOWS = 5
VERSIONS = 20
CONCURRENCY = 16
AUTHOR = {"name": "Bench", "email": "bench@pas.invalid"}

_decode_definition = msgspec.json.Decoder(WorkflowDefinition).decode
_decode_version = msgspec.json.Decoder(WorkflowVersion).decode


def definition(workflow_id: str, version: int) -> dict[str, object]:
    return {
        "workflow_id": workflow_id,
        "description": f"Version {version} of {workflow_id}",
        "prompts": {
            "system": "You are a financial analyst. " * 20,
            "summarise": f"Summarise the filing in {version % 5 + 2} sentences.",
        },
        "model": "llama3.1:8b",
        "parameters": {"temperature": round(0.1 * (version % 8), 1), "max_tokens": 512},
        "metadata": {"owner": "desk-a", "revision": version},
    }


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def keys(count: int, seed: int = 7) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    return [(f"wf_{rng.randrange(WORKFLOWS)}", rng.randrange(VERSIONS) + 1) for _ in range(count)]


def time_calls(call: Callable[[str, int], object], targets: list[tuple[str, int]]) -> list[float]:
    samples = []
    for workflow_id, version in targets:
        started = time.perf_counter()
        call(workflow_id, version)
        samples.append(time.perf_counter() - started)
    return samples


def gitpython_reads(repo_path: Path, targets: list[tuple[str, int]]) -> tuple[list[float], float]:
    """The baseline, in this process: per read, resolve the tag and decode the blob."""
    with Repo(repo_path) as repo:

        def read(workflow_id: str, version: int) -> WorkflowDefinition:
            blob = (
                repo.tags[f"{workflow_id}-v{version}"].commit.tree / f"workflows/{workflow_id}.json"
            )
            return _decode_definition(blob.data_stream.read())

        read(*targets[0])  # start git's cat-file processes before timing
        started = time.perf_counter()
        samples = time_calls(read, targets)
        elapsed = time.perf_counter() - started
    return samples, len(targets) / elapsed


async def populate(http: httpx.AsyncClient) -> str:
    for n in range(WORKFLOWS):
        for version in range(1, VERSIONS + 1):
            response = await http.post(
                f"/workflows/wf_{n}/versions",
                json={
                    "definition": definition(f"wf_{n}", version),
                    "author": AUTHOR,
                    "message": f"v{version}",
                },
            )
            response.raise_for_status()
    response = await http.post(
        "/experiments", json={"workflow_id": "wf_0", "variants": {"A": 1, "B": 2}}
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def http_reads(
    http: aiohttp.ClientSession, targets: list[tuple[str, int]]
) -> tuple[list[float], float]:
    """Latency from one client, then reads/s from CONCURRENCY clients."""

    async def read(workflow_id: str, version: int) -> float:
        started = time.perf_counter()
        async with http.get(f"/workflows/{workflow_id}/versions/{version}") as response:
            response.raise_for_status()
            await response.read()
        return time.perf_counter() - started

    samples = [await read(*target) for target in targets]
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def bounded(target: tuple[str, int]) -> float:
        async with semaphore:
            return await read(*target)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(t) for t in targets))
    return samples, len(targets) / (time.perf_counter() - started)


async def http_assignments(
    http: aiohttp.ClientSession, experiment_id: str, count: int
) -> tuple[list[float], Experiment]:
    body = [msgspec.json.encode({"unit": f"doc-{n}"}) for n in range(count)]
    headers = {"content-type": "application/json"}
    samples = []
    for content in body:
        started = time.perf_counter()
        async with http.post(
            f"/experiments/{experiment_id}/assign", data=content, headers=headers
        ) as response:
            response.raise_for_status()
            await response.read()
        samples.append(time.perf_counter() - started)
    async with http.get(f"/experiments/{experiment_id}") as response:
        experiment = msgspec.json.decode(await response.read(), type=Experiment)
    return samples, experiment


async def against_the_service(repo_path: Path, reads: int) -> dict[str, object]:
    process = ServiceProcess(
        "services.versioning.app:app",
        free_port(),
        {"VERSIONING_REPO_PATH": str(repo_path), "LOG_LEVEL": "WARNING"},
        repo_path.parent / "versioning.log",
    ).start()
    try:
        async with httpx.AsyncClient(base_url=process.url) as http:
            experiment_id = await populate(http)
            targets = keys(reads)
            # The answer is the same document gitpython reads.
            sample = _decode_version(
                (await http.get(f"/workflows/{targets[0][0]}/versions/{targets[0][1]}")).content
            )
        # aiohttp as the load generator: httpx's pool is the bottleneck at 16 connections.
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(process.url, connector=connector) as load:
            await http_reads(load, targets[: CONCURRENCY * 4])  # warm up: cache, connections
            latency, rate = await http_reads(load, targets)
            assign_latency, experiment = await http_assignments(load, experiment_id, reads)
    finally:
        process.stop()
    return {
        "sample": sample,
        "latency": latency,
        "rate": rate,
        "assign_latency": assign_latency,
        "experiment": experiment,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=2_000)
    args = parser.parse_args()
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        repo_path = Path(tmp) / "repo"
        served = asyncio.run(against_the_service(repo_path, args.reads))
        targets = keys(args.reads)
        base_latency, base_rate = gitpython_reads(repo_path, targets)
        with Repo(repo_path) as repo:
            first = targets[0]
            blob = repo.tags[f"{first[0]}-v{first[1]}"].commit.tree / f"workflows/{first[0]}.json"
            direct = _decode_definition(blob.data_stream.read())
    sample = served["sample"]
    assert isinstance(sample, WorkflowVersion)
    assert sample.definition == direct, "the service and git disagree"

    latency = served["latency"]
    assign_latency = served["assign_latency"]
    experiment = served["experiment"]
    rate = served["rate"]
    assert isinstance(latency, list)
    assert isinstance(assign_latency, list)
    assert isinstance(experiment, Experiment)
    assert isinstance(rate, float)
    units = [f"doc-{n}" for n in range(args.reads)]
    hash_latency = [0.0] * len(units)
    for n, unit in enumerate(units):
        started = time.perf_counter()
        experiment.variant_for(unit)
        hash_latency[n] = time.perf_counter() - started

    (h50, h99), (b50, b99) = percentiles(latency), percentiles(base_latency)
    (a50, a99), (x50, x99) = percentiles(assign_latency), percentiles(hash_latency)
    print(f"versions={WORKFLOWS * VERSIONS} ({WORKFLOWS} workflows) reads={args.reads}")
    print(
        f"gitpython direct, 1 thread   p50 {b50 * 1e3:7.3f} ms  p99 {b99 * 1e3:7.3f} ms  "
        f"{base_rate:8,.0f} reads/s"
    )
    print(f"HTTP GET version, 1 client   p50 {h50 * 1e3:7.3f} ms  p99 {h99 * 1e3:7.3f} ms")
    print(
        f"HTTP GET version, {CONCURRENCY} clients                            {rate:8,.0f} reads/s"
    )
    print(
        f"ratio service/gitpython      reads/s {rate / base_rate:6.2f} x   "
        f"p99 latency {h99 / b99:6.2f} x"
    )
    print(f"HTTP POST assign, 1 client   p50 {a50 * 1e3:7.3f} ms  p99 {a99 * 1e3:7.3f} ms")
    print(f"in-process hash (no HTTP)    p50 {x50 * 1e6:7.1f} us  p99 {x99 * 1e6:7.1f} us")
    print(f"ratio assign p99/gitpython read p99 {a99 / b99:6.2f} x")


if __name__ == "__main__":
    main()
