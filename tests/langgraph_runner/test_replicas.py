"""Two runner replicas on one PostgreSQL (checkpoints and run records): runs started on either
are read and watched from both; a replica SIGKILLed mid-run has its run taken over by the other
once its lease expires (short leases here: TTL 3 s, renewed every 1 s), resumed from its
checkpoint (the completed node does not run again); Kafka-triggered events are answered once
while both replicas consume them.

Runs when PAS_TEST_POSTGRES_DSN names a database the tests may write to; skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from httpx_sse import aconnect_sse

from libs.common.schemas.workflows import WorkflowResult
from tests.langgraph_runner.conftest import (
    Topics,
    collect,
    start_held_run,
    trigger,
    wait_for_run,
    wait_until,
)
from tests.langgraph_runner.probes import count
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess

DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="set PAS_TEST_POSTGRES_DSN to test runner replicas"),
]

SHORT_LEASES = {"RUNNER_LEASE_TTL_S": "3", "RUNNER_LEASE_RENEW_S": "1"}


@pytest.fixture
def start_replica(
    runner_process_factory: Callable[..., ServiceProcess],
) -> Callable[..., ServiceProcess]:
    """A runner process on the shared PostgreSQL, with short leases."""

    def start(**env: str) -> ServiceProcess:
        return runner_process_factory(RUNNER_CHECKPOINT_DSN=DSN, **SHORT_LEASES, **env)

    return start


@pytest.mark.usefixtures("empty_database")
async def test_runs_are_shared_and_a_killed_replicas_run_is_taken_over(
    start_replica: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    a, b = start_replica(), start_replica()
    log = tmp_path / "probe.log"
    watched_gate, killed_gate = tmp_path / "watched-gate", tmp_path / "killed-gate"
    async with (
        httpx.AsyncClient(base_url=a.url, timeout=30) as on_a,
        httpx.AsyncClient(base_url=b.url, timeout=30) as on_b,
    ):
        instances = {(await on.get("/health")).json()["details"]["instance"] for on in (on_a, on_b)}
        # A run on A, read, listed and watched to its end through B.
        watched = await start_held_run(a, log, watched_gate)
        # A node's progress is written without holding up the next node: B sees it soon after.
        seen_on_b = await poll_async(
            lambda: read_run(on_b, watched), until=lambda run: run["steps"] >= 1
        )
        listed_on_b = [run["run_id"] for run in (await on_b.get("/runs")).json()["runs"]]
        statuses: list[str] = []
        async with aconnect_sse(on_b, "GET", f"/runs/{watched}/stream") as source:
            async for message in source.aiter_sse():
                body = msgspec.json.decode(message.data)
                if message.event == "status":
                    statuses.append(body["status"])
                watched_gate.touch()  # let the run go on once B listens

        # A run on A, killed mid-way (a done, b going): B takes it over.
        killed = await start_held_run(a, log, killed_gate)
        a.kill()
        killed_gate.touch()
        taken_over = await wait_for_run(on_b, killed)
        metrics = (await on_b.get("/metrics")).text

    assert len(instances) == 2  # each replica its own name by default
    assert seen_on_b["status"] == "running"
    assert seen_on_b["steps"] >= 1
    assert watched in listed_on_b
    assert statuses[0] == "running"
    assert statuses[-1] == "success"

    assert taken_over["status"] == "success", taken_over["error"]
    assert taken_over["output"]["visited"] == ["a", "b", "c"]
    assert taken_over["attempts"] == 2
    assert count(log, "a", "start", killed) == 1  # completed before the kill: not run again
    assert count(log, "b", "start", killed) == 2  # going at the kill: run again
    assert count(log, "b", "end", killed) == 1
    assert count(log, "c", "start", killed) == 1
    assert 'pas_runner_runs_taken_over_total{workflow="probe"} 1.0' in metrics
    assert 'pas_runner_runs_recovered_total{workflow="probe"} 1.0' in metrics
    assert "resuming run taken over" in b.logs()


async def read_run(client: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/runs/{run_id}")).json()
    return body


async def _assigned(replica: ServiceProcess) -> set[int]:
    async with httpx.AsyncClient(base_url=replica.url) as http:
        health = (await http.get("/health")).json()
    return set(health["details"]["kafka"]["partitions"])


@pytest.mark.usefixtures("empty_database")
async def test_events_are_answered_once_by_two_replicas(
    start_replica: Callable[..., ServiceProcess],
    kafka_bootstrap: str,
    topics: Topics,
    tmp_path: Path,
) -> None:
    kafka = {"RUNNER_BOOTSTRAP_SERVERS": kafka_bootstrap, "RUNNER_COMMIT_INTERVAL_S": "0.2"}
    replicas = [start_replica(**topics.env(), **kafka) for _ in range(2)]
    # Both in the group, the topic's three partitions split between them.
    shares: list[set[int]] = []
    for _ in range(300):
        shares = [await _assigned(replica) for replica in replicas]
        if all(shares) and set.union(*shares) == {0, 1, 2}:
            break
        await asyncio.sleep(0.1)
    log = tmp_path / "probe.log"
    events = [trigger("probe", {"log": str(log), "value": i}) for i in range(12)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for i, event in enumerate(events):
            await producer.send(
                topics.events,
                key=event["workflow_run_id"].encode(),
                value=msgspec.json.encode(event),
                partition=i % 3,  # every partition, so both replicas take part
            )
        await producer.flush()
    finally:
        await producer.stop()

    found = await collect(
        kafka_bootstrap, topics.results, lambda found: len(found) >= len(events), timeout_s=60
    )
    # Anything extra (a second answer) would come within the outbox interval.
    found = await collect(kafka_bootstrap, topics.results, lambda _: False, timeout_s=4)
    results = [msgspec.convert(r.value, WorkflowResult, strict=False) for r in found]

    assert all(shares)
    assert set.union(*shares) == {0, 1, 2}
    assert sorted(r.event_id for r in results) == sorted(e["event_id"] for e in events)
    assert {r.payload.status for r in results} == {"success"}
    assert len({r.metadata["runner_instance"] for r in results}) == 2  # both took part
    assert count(log, "a", "start") == len(events)  # each event ran once


@pytest.mark.usefixtures("empty_database")
async def test_a_stalled_replica_stops_the_run_another_took_over(
    start_replica: Callable[..., ServiceProcess], tmp_path: Path
) -> None:
    """A replica frozen past its lease (SIGSTOP: a long pause, not a death) finds on waking that
    the other replica took its run over: it stops its own copy and records nothing, and the run
    ends once, by the replica that holds it."""
    a, b = start_replica(), start_replica()
    log, gate = tmp_path / "probe.log", tmp_path / "gate"
    run_id = await start_held_run(a, log, gate)
    os.kill(a.pid, signal.SIGSTOP)
    try:
        # B claims the expired lease and resumes the run from its checkpoint: b starts again.
        await wait_until(lambda: count(log, "b", "start", run_id) == 2)
    finally:
        os.kill(a.pid, signal.SIGCONT)
    await wait_until(lambda: "run taken over by another runner" in a.logs())
    gate.touch()
    async with httpx.AsyncClient(base_url=b.url, timeout=30) as on_b:
        ended = await wait_for_run(on_b, run_id)
    async with httpx.AsyncClient(base_url=a.url, timeout=30) as on_a:
        seen_on_a = (await on_a.get(f"/runs/{run_id}")).json()

    assert ended["status"] == "success", ended["error"]
    assert ended["output"]["visited"] == ["a", "b", "c"]
    assert count(log, "b", "end", run_id) == 1  # A's copy was stopped before its gate opened
    assert count(log, "c", "start", run_id) == 1
    assert seen_on_a == ended  # A reads B's record: it wrote nothing over it
