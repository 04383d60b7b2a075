"""Analytics fixtures: the collector on DuckDB (and PostgreSQL when PAS_TEST_POSTGRES_DSN is
set), in-process or as a real uvicorn process on a real broker, and known sets of events."""

from __future__ import annotations

import asyncio
import json
import os
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from litestar.testing import AsyncTestClient

from libs.common.kafka.topics import ensure_topics
from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests.support.polling import poll_async
from tests.support.processes import ServiceProcess, ServiceProcesses
from tests.support.topic_reader import read_from_start

POSTGRES_DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")
NO_POSTGRES = "set PAS_TEST_POSTGRES_DSN to test the PostgreSQL store"
COLLECTOR_APP = "services.analytics.app:app"
MODELS = ("smollm2-135m", "gpt-4o-mini", "claude-haiku")
PROVIDERS = {"smollm2-135m": "local", "gpt-4o-mini": "openai", "claude-haiku": "anthropic"}
WORKFLOWS = ("document_analysis", "supervisor", "tool_agent")
CAPABILITIES = ("reasoning", "classification", "extraction")
DESKS = ("rates", "fx-options", "equities")

PG_OBJECTS = (
    "DROP VIEW IF EXISTS pas_analytics_usage_by_hour, pas_analytics_runs_by_hour",
    "DROP MATERIALIZED VIEW IF EXISTS pas_analytics_usage_hourly_live",
    "DROP TABLE IF EXISTS pas_analytics_usage, pas_analytics_runs, pas_analytics_usage_hourly, "
    "pas_analytics_runs_hourly, pas_analytics_meta, pas_analytics_scores",
)


# --- events ---------------------------------------------------------------------------------


def usage_event(at: datetime, **fields: Any) -> dict[str, Any]:
    """A usage event as a producer publishes it (JSON-ready)."""
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "timestamp": at.isoformat(),
        "service": "provider_router",
        "provider": "local",
        "model": MODELS[0],
        "status": "ok",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_ms": 100.0,
        "cost_usd": 0.0,
        "cached_tokens": 0,  # as a producer's msgspec encodes the defaults
        "cache_write_tokens": 0,
    }
    event.update(fields)
    return event


def long_name(rng: random.Random, length: int = 256) -> str:
    """A name as long as the wire types allow (a :data:`Name`'s 256 characters by default), of
    characters drawn at random beyond the Basic Multilingual Plane: 4 bytes each in UTF-8, and
    nothing a store's compression shortens."""
    return "".join(chr(rng.randint(0x10000, 0x10FFFF)) for _ in range(length))


LONG_NAMED = ("service", "provider", "model", "capability", "workflow_id", "desk")
"""The text fields of a usage event that its hourly row is kept by (with its status)."""


def encode_event(value: dict[str, Any]) -> bytes:
    """An event as a producer puts it on a topic (JSON, UTF-8)."""
    return json.dumps(value).encode()


def run_event(at: datetime, **fields: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "run_id": f"run-{uuid.uuid4().hex[:12]}",
        "workflow_id": WORKFLOWS[0],
        "status": "success",
        "timestamp": at.isoformat(),
        "duration_ms": 1000.0,
    }
    run.update(fields)
    return run


def known_events(
    now: datetime, *, count: int = 120, runs: int = 60, seed: int = 7, spread_h: float = 5.0
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A seeded mix of usage and runs over the last ``spread_h`` hours: several models,
    providers, workflows, capabilities and desks, errors, calls without a workflow or a desk,
    and prompts partly read from a cache or written to one."""
    rng = random.Random(seed)
    usage = []
    for _ in range(count):
        model = rng.choice(MODELS)
        at = now - timedelta(seconds=rng.uniform(60, spread_h * 3600))
        prompt = rng.randint(5, 900)
        cached = rng.choice((0, rng.randint(0, prompt)))
        usage.append(
            usage_event(
                at,
                model=model,
                provider=PROVIDERS[model],
                capability=rng.choice((*CAPABILITIES, None)),
                workflow_id=rng.choice((*WORKFLOWS, None)),
                status="error" if rng.random() < 0.15 else "ok",
                prompt_tokens=prompt,
                completion_tokens=rng.randint(0, 300),
                latency_ms=round(rng.uniform(20, 4000), 3),
                # Ten decimal places at most: the stores keep cost exactly at that scale.
                cost_usd=0.0 if model == MODELS[0] else round(rng.uniform(0, 0.02), 10),
                desk=rng.choice((*DESKS, None)),
                cached_tokens=cached,
                cache_write_tokens=rng.choice((0, rng.randint(0, prompt - cached))),
            )
        )
    outcomes = [
        run_event(
            now - timedelta(seconds=rng.uniform(60, spread_h * 3600)),
            workflow_id=rng.choice(WORKFLOWS),
            status="error" if rng.random() < 0.25 else "success",
            duration_ms=round(rng.uniform(200, 60_000), 3),
        )
        for _ in range(runs)
    ]
    return usage, outcomes


# --- the collector in-process ----------------------------------------------------------------


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "postgres",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES),
            ],
        ),
    ]
)
async def collector_settings(request: pytest.FixtureRequest, tmp_path: Path) -> AnalyticsSettings:
    """Collector settings on each store, starting empty; Kafka off (events come over HTTP)."""
    database_url = None
    if request.param == "postgres":
        import psycopg  # noqa: PLC0415

        async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
            for statement in PG_OBJECTS:
                await conn.execute(statement)
        database_url = POSTGRES_DSN
    return AnalyticsSettings(
        db_path=str(tmp_path / "analytics.duckdb"),
        database_url=database_url,
        consume=False,
        raw_retention_s=0,
        gauge_refresh_s=0.2,
        log_level="WARNING",
    )


CollectorFactory = Callable[..., Awaitable[AsyncTestClient[Any]]]


@pytest.fixture
def make_collector(
    collector_settings: AnalyticsSettings, open_app: Callable[..., Any]
) -> CollectorFactory:
    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        settings = msgspec.structs.replace(collector_settings, **overrides)
        client: AsyncTestClient[Any] = await open_app(create_app(settings))
        return client

    return make


@pytest.fixture
async def collector(make_collector: CollectorFactory) -> AsyncTestClient[Any]:
    return await make_collector()


# --- the collector as a process on a real broker ----------------------------------------------


class Topics(msgspec.Struct, frozen=True):
    usage: str
    workflow_results: str
    llm_results: str
    documents_dlq: str
    dlq: str

    @classmethod
    def for_run(cls, run: str) -> Topics:
        """The collector's topics, named for one test run so that runs never share one."""
        return cls(
            usage=f"usage-{run}",
            workflow_results=f"wf-results-{run}",
            llm_results=f"llm-results-{run}",
            documents_dlq=f"docs-dlq-{run}",
            dlq=f"analytics-dlq-{run}",
        )

    def environment(self) -> dict[str, str]:
        return {
            "ANALYTICS_USAGE_TOPIC": self.usage,
            "ANALYTICS_WORKFLOW_RESULTS_TOPIC": self.workflow_results,
            "ANALYTICS_LLM_RESULTS_TOPIC": self.llm_results,
            "ANALYTICS_DOCUMENTS_DLQ_TOPIC": self.documents_dlq,
            "ANALYTICS_DLQ_TOPIC": self.dlq,
        }


@pytest.fixture
def topics(kafka_bootstrap: str) -> Topics:
    run = uuid.uuid4().hex[:8]
    names = Topics.for_run(run)
    asyncio.run(
        ensure_topics(
            kafka_bootstrap,
            {
                names.usage: 3,
                names.workflow_results: 3,
                names.llm_results: 3,
                names.documents_dlq: 1,
                names.dlq: 1,
            },
        )
    )
    return names


def collector_environment(
    kafka_bootstrap: str, topics: Topics, db_path: Path, **extra: str
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "ANALYTICS_DB_PATH": str(db_path),
        "ANALYTICS_GROUP_ID": f"analytics-{topics.usage}",
        "ANALYTICS_GAUGE_REFRESH_S": "0.5",
        "ANALYTICS_RAW_RETENTION_S": "0",
        **topics.environment(),
        **extra,
    }


@pytest.fixture
def start_collector(
    kafka_bootstrap: str, topics: Topics, service_processes: ServiceProcesses, tmp_path: Path
) -> Callable[..., ServiceProcess]:
    """Start the collector as a uvicorn process consuming the test's topics; all stopped at
    the end. Every process of a test shares one DuckDB file, so a restart finds its data."""

    def start(**extra: str) -> ServiceProcess:
        environment = collector_environment(
            kafka_bootstrap, topics, tmp_path / "analytics.duckdb", **extra
        )
        return service_processes.start(COLLECTOR_APP, environment, name="collector")

    return start


async def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        for value in values:
            await producer.send(topic, value=value)
        await producer.flush()
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, want: int, timeout_s: float = 30) -> list[bytes]:
    """Values on ``topic`` from the start, until ``want`` came (or the timeout)."""
    values = await read_from_start(
        bootstrap, topic, attrgetter("value"), want=want, timeout_s=timeout_s
    )
    return [value for value in values if value is not None]


async def wait_until(
    probe: Callable[[], Awaitable[Any]],
    done: Callable[[Any], bool],
    *,
    timeout_s: float = 60,
    interval_s: float = 0.2,
) -> Any:
    """Ask ``probe`` until ``done`` says its answer is complete; the last answer either way
    (the collector's defaults: a minute, five asks a second)."""
    return await poll_async(probe, until=done, timeout_s=timeout_s, interval_s=interval_s)


async def totals(url: str, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get("/analytics/costs", params=params)
        response.raise_for_status()
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def utc_now() -> datetime:
    return datetime.now(UTC)
