"""Runner fixtures: apps in-process and as real processes, the real embedded model behind the
LLM nodes, a real broker with topics of a test's own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from litestar.testing import AsyncTestClient

from libs.common.kafka.topics import ensure_topics
from services.langgraph_runner.app import create_app
from services.langgraph_runner.settings import RunnerSettings
from tests.langgraph_runner.probes import PROBE_REFERENCE, count
from tests.llm.conftest import llm_process  # noqa: F401  (the embedded model, session-wide)
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess, free_port
from tests.support.topic_reader import read_from_start

RUNNER_APP = "services.langgraph_runner.app:app"
TERMINAL = {"success", "error", "cancelled"}
POSTGRES_DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")
RUN_STORES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param(
        "postgres",
        id="postgres",
        marks=[
            pytest.mark.postgres,
            pytest.mark.skipif(
                not POSTGRES_DSN, reason="set PAS_TEST_POSTGRES_DSN to test PostgreSQL"
            ),
        ],
    ),
]
"""The run stores a test given ``params=RUN_STORES`` runs on: SQLite, and PostgreSQL when
PAS_TEST_POSTGRES_DSN names a database (``checkpoint_dsn``)."""


@pytest.fixture
def runner_settings(tmp_path: Path) -> RunnerSettings:
    """A runner whose LLM nodes have no model (for deterministic workflows only)."""
    return RunnerSettings(
        llm_url=f"http://127.0.0.1:{free_port()}",
        checkpoint_path=str(tmp_path / "checkpoints.db"),
        store_path=str(tmp_path / "runs.db"),
        extra_workflows=[PROBE_REFERENCE],
        node_retry_initial_s=0.01,
        node_retry_max_s=0.05,
        log_level="WARNING",
    )


@pytest.fixture
def make_runner(
    runner_settings: RunnerSettings, open_app: Callable[..., Any]
) -> Callable[..., Any]:
    """Open runner apps (lifespan included) with settings overrides."""

    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        client: AsyncTestClient[Any] = await open_app(
            create_app(msgspec.structs.replace(runner_settings, **overrides))
        )
        return client

    return make


@pytest.fixture
async def runner(make_runner: Callable[..., Any]) -> AsyncTestClient[Any]:
    client: AsyncTestClient[Any] = await make_runner()
    return client


@pytest.fixture
async def llm_runner(
    make_runner: Callable[..., Any],
    llm_process: ServiceProcess,  # noqa: F811  (the fixture imported above)
) -> AsyncTestClient[Any]:
    """A runner whose LLM nodes talk to a PAS LLM service (embedded SmolLM2-135M) through
    ChatOllama and its Ollama-compatible API."""
    client: AsyncTestClient[Any] = await make_runner(llm_url=llm_process.url)
    return client


@pytest.fixture
def runner_process_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start runners as real uvicorn processes on one store (stopped at the end)."""
    started: list[ServiceProcess] = []

    def start(**env: str) -> ServiceProcess:
        environment = {
            "RUNNER_CHECKPOINT_PATH": str(tmp_path / "checkpoints.db"),
            "RUNNER_STORE_PATH": str(tmp_path / "runs.db"),
            "RUNNER_EXTRA_WORKFLOWS": PROBE_REFERENCE,
            "RUNNER_LLM_URL": f"http://127.0.0.1:{free_port()}",
            "RUNNER_NODE_RETRY_INITIAL_S": "0.01",
            # A killed runner's runs are taken over (by the next one) once their lease expires.
            "RUNNER_LEASE_TTL_S": "3",
            "RUNNER_LEASE_RENEW_S": "1",
            "LOG_LEVEL": "INFO",
            **env,
        }
        process = ServiceProcess(
            RUNNER_APP, free_port(), environment, tmp_path / f"runner-{len(started)}.log"
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()


async def wait_for_run(
    client: Any, run_id: str, statuses: set[str] | None = None, timeout_s: float = 60
) -> dict[str, Any]:
    """Poll ``GET /runs/{id}`` until the run's status is one of ``statuses``."""
    wanted = statuses or TERMINAL | {"interrupted"}

    async def run() -> dict[str, Any]:
        response = await client.get(f"/runs/{run_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    body = await poll_async(run, until=lambda body: body["status"] in wanted, timeout_s=timeout_s)
    assert body["status"] in wanted, f"run {run_id} still {body['status']}: {body}"
    return body


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    assert await poll_async(predicate, timeout_s=timeout_s, interval_s=0.02), (
        "condition not met in time"
    )


# -- Kafka -------------------------------------------------------------------------------------


class Topics(msgspec.Struct, frozen=True):
    events: str
    results: str
    dlq: str

    def settings(self) -> dict[str, str]:
        return {
            "events_topic": self.events,
            "results_topic": self.results,
            "dlq_topic": self.dlq,
            "group_id": f"runner-{self.events}",
        }

    def env(self) -> dict[str, str]:
        return {f"RUNNER_{key.upper()}": value for key, value in self.settings().items()}


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics(events=f"wf-events-{run}", results=f"wf-results-{run}", dlq=f"wf-dlq-{run}")
    asyncio.run(ensure_topics(kafka_bootstrap, {names.events: 3, names.results: 3, names.dlq: 1}))
    return names


def trigger(workflow_id: str, payload: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    """A ``workflow.triggered`` event as the spec writes it (naive UTC timestamp)."""
    event = {
        "event_id": str(uuid.uuid4()),
        "event_type": "workflow.triggered",
        "timestamp": "2025-01-27T10:00:00.123456",
        "source": "airflow",
        "workflow_id": workflow_id,
        "workflow_run_id": f"manual__2025-01-27T10:00:00+00:00-{uuid.uuid4().hex[:6]}",
        "payload": payload,
        "metadata": {"environment": "dev", "version": "1.0"},
    }
    event.update(overrides)
    return event


async def send(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Produce ``(key, value)`` records in order; a value of ``None`` is a tombstone."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, key=key, value=value)
        await producer.flush()
    finally:
        await producer.stop()


def as_message(event: dict[str, Any]) -> tuple[bytes, bytes]:
    return str(event.get("workflow_run_id", "")).encode(), msgspec.json.encode(event)


class Received(msgspec.Struct, frozen=True):
    key: str | None
    value: dict[str, Any]


async def collect(
    bootstrap: str,
    topic: str,
    until: Callable[[list[Received]], bool],
    timeout_s: float = 60,
) -> list[Received]:
    """Every record of ``topic`` from the start, until ``until`` says enough or the timeout
    ends."""
    return await read_from_start(
        bootstrap,
        topic,
        lambda record: Received(
            key=record.key.decode() if record.key else None,
            value=msgspec.json.decode(record.value or b""),
        ),
        want=0,
        timeout_s=timeout_s,
        enough=until,
    )


async def events_counted(runner: Any, outcome: str) -> float:
    """``pas_runner_events_total{outcome=...}``: the bridge's events by what became of them
    (accepted, duplicate, retried, dead_lettered)."""
    text = (await runner.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith(f'pas_runner_events_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
async def kafka_runner(
    make_runner: Callable[..., Any], kafka_bootstrap: str, topics: Topics
) -> AsyncTestClient[Any]:
    """A runner with its Kafka bridge on the test's topics (deterministic workflows)."""
    client: AsyncTestClient[Any] = await make_runner(
        bootstrap_servers=kafka_bootstrap, commit_interval_s=0.2, **topics.settings()
    )
    return client


@pytest.fixture
async def empty_database() -> None:
    """The runner's PostgreSQL tables dropped, in PAS_TEST_POSTGRES_DSN's database."""
    import psycopg  # noqa: PLC0415

    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        await conn.execute(
            "DROP TABLE IF EXISTS pas_runner_runs, checkpoints, checkpoint_blobs, "
            "checkpoint_writes, checkpoint_migrations"
        )


async def start_held_run(runner: ServiceProcess, log: Path, gate: Path) -> str:
    """A probe run on ``runner``, held in node ``b`` until ``gate`` exists; returns once ``a``
    is done and checkpointed (durability=sync), that is once ``b`` has started."""
    async with httpx.AsyncClient(base_url=runner.url) as http:
        response = await http.post(
            "/workflows/probe/runs", json={"input": {"log": str(log), "gate": str(gate)}}
        )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["run_id"]
    await wait_until(lambda: count(log, "b", "start", run_id) == 1)
    return run_id
