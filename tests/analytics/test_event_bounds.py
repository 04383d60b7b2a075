"""Events a store cannot hold are refused at the edge, naming the field, on either store.

DuckDB and PostgreSQL keep cost as DECIMAL(18,10), so a cost of 10^8 dollars or more does not
fit; counts are INTEGER; a number past a double's range is no number; PostgreSQL text holds no
NUL character. Over HTTP such an event is a 400 that names the
field and the batch is stored not at all; from Kafka it is a dead letter with the reason, and
the events around it are stored. The largest values the schema allows are stored exactly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from libs.common.schemas.documents import DeadLetter, DocumentResult
from libs.common.schemas.usage import (
    MAX_COST_USD,
    MAX_COUNT,
    MAX_DURATION_MS,
    MAX_REASON_CHARS,
)
from tests.analytics.conftest import (
    COLLECTOR_APP,
    NO_POSTGRES,
    PG_OBJECTS,
    POSTGRES_DSN,
    Topics,
    produce,
    read_topic,
    run_event,
    usage_event,
    utc_now,
    wait_until,
)
from tests.support.processes import ServiceProcess, free_port

STORES = [
    "duckdb",
    pytest.param(
        "postgres",
        marks=[pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)],
    ),
]
USAGE_TEXT = [
    "event_id",
    "service",
    "provider",
    "model",
    "request_id",
    "capability",
    "workflow_id",
    "run_id",
    "error",
]
RUN_TEXT = ["run_id", "workflow_id", "source", "error"]


@pytest.fixture(scope="module", params=STORES)
def collector_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The collector as a uvicorn process on each store, Kafka off."""
    folder = tmp_path_factory.mktemp(f"bounds-{request.param}")
    environment = {"ANALYTICS_CONSUME": "false", "ANALYTICS_DB_PATH": str(folder / "a.duckdb")}
    if request.param == "postgres":
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            for statement in PG_OBJECTS:
                conn.execute(statement)
        environment["ANALYTICS_DATABASE_URL"] = POSTGRES_DSN
    process = ServiceProcess(COLLECTOR_APP, free_port(), environment, folder / "collector.log")
    process.start()
    yield process.url
    process.stop()


def _marked() -> str:
    """A model name only this test uses, to find (or miss) its batch in the reports."""
    return f"bounds-{uuid.uuid4().hex[:10]}"


async def _models(url: str) -> set[str]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get("/analytics/models")
        response.raise_for_status()
        return {line["model"] for line in response.json()["models"]}


async def _refused(url: str, batch: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.post("/events", json=batch)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response


def _field(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    assert len(errors) == 1, errors
    field: str = errors[0]["field"]
    assert field in response.json()["detail"]
    return field


@pytest.mark.parametrize("cost", [1e8, 123_456_789.5, 1e20])
async def test_a_cost_beyond_the_stores_decimal_is_a_400_naming_it(
    collector_url: str, cost: float
) -> None:
    kept = _marked()
    batch = {"usage": [usage_event(utc_now(), model=kept), usage_event(utc_now(), cost_usd=cost)]}

    response = await _refused(collector_url, batch)

    assert _field(response) == "usage[1].cost_usd"
    assert kept not in await _models(collector_url)


@pytest.mark.parametrize(
    ("batch", "field"),
    [
        (
            {"usage": [usage_event(utc_now(), latency_ms=MAX_DURATION_MS * 2)]},
            "usage[0].latency_ms",
        ),
        ({"runs": [run_event(utc_now(), duration_ms=MAX_DURATION_MS * 2)]}, "runs[0].duration_ms"),
    ],
)
async def test_a_duration_past_the_bound_is_a_400_naming_it(
    collector_url: str, batch: dict[str, Any], field: str
) -> None:
    response = await _refused(collector_url, batch)

    assert _field(response) == field


@pytest.mark.parametrize(
    ("kind", "field", "number"),
    [
        ("usage", "prompt_tokens", str(MAX_COUNT + 1)),
        ("usage", "cached_tokens", str(2**63)),
        ("usage", "completion_tokens", "1" + "0" * 40),
        ("usage", "cache_write_tokens", "-1"),
        ("usage", "latency_ms", "1e400"),
        ("usage", "cost_usd", "-1e-9"),
        ("runs", "duration_ms", "-1e400"),
    ],
)
async def test_a_number_no_store_column_holds_is_a_400_naming_it(
    collector_url: str, kind: str, field: str, number: str
) -> None:
    """Written as JSON has it: 1e400 is past a double's range (msgspec would read infinity)."""
    event = usage_event(utc_now()) if kind == "usage" else run_event(utc_now())
    body = msgspec.json.encode({kind: [{**event, field: 0}]})
    body = body.replace(f'"{field}":0'.encode(), f'"{field}":{number}'.encode())

    async with httpx.AsyncClient(base_url=collector_url, timeout=10) as http:
        response = await http.post(
            "/events", content=body, headers={"content-type": "application/json"}
        )

    assert response.status_code == 400, response.text
    assert _field(response) == f"{kind}[0].{field}"


async def test_the_longest_text_and_the_earliest_and_latest_times_allowed_are_stored(
    collector_url: str,
) -> None:
    """Every text at its longest, in four-byte characters (four times as many bytes), and
    times at both ends of the stored range, in zones that put them on another day: both
    stores hold all of it."""
    wide = "\U0001f4c8"  # four bytes in UTF-8
    texts = ["service", "provider", "model", "request_id", "capability", "workflow_id", "desk"]
    usage = [
        usage_event(
            utc_now(),
            **dict.fromkeys(texts, wide * 256),
            event_id=f"{uuid.uuid4().hex}{wide * 96}",
            run_id=wide * 256,
            error=wide * MAX_REASON_CHARS,
            timestamp=moment,
            prompt_tokens=MAX_COUNT,
            completion_tokens=MAX_COUNT,
            cached_tokens=MAX_COUNT,
            cache_write_tokens=MAX_COUNT,
        )
        for moment in (
            "1970-01-01T00:00:00Z",
            "1970-01-01T23:59:00+23:59",
            "2199-12-31T23:59:59.999999Z",
            "2199-12-31T00:00:59.999999-23:59",
        )
    ]
    runs = [
        run_event(
            utc_now(),
            run_id=f"{uuid.uuid4().hex}{wide * 224}",
            workflow_id=wide * 256,
            source=wide * 64,
            error=wide * MAX_REASON_CHARS,
            timestamp=moment,
        )
        for moment in ("1970-01-01T00:00:00Z", "2199-12-31T23:59:59.999999Z")
    ]

    async with httpx.AsyncClient(base_url=collector_url, timeout=10) as http:
        response = await http.post("/events", json={"usage": usage, "runs": runs})

    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(usage) + len(runs)


@pytest.mark.parametrize(
    "moment", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00", "1969-12-31T23:59:59Z"]
)
@pytest.mark.parametrize("kind", ["usage", "runs"])
async def test_a_time_no_store_can_hold_is_a_400_naming_it(
    collector_url: str, moment: str, kind: str
) -> None:
    """At the calendar's edge a time overflows once in UTC (the year 10000): stored, it failed
    every try (a 500 over HTTP, a consumer stuck on its batch)."""
    event = usage_event(utc_now()) if kind == "usage" else run_event(utc_now())
    response = await _refused(collector_url, {kind: [{**event, "timestamp": moment}]})

    assert _field(response) == f"{kind}[0].timestamp"
    assert "1970-01-01" in response.json()["detail"]


async def test_the_largest_cost_and_durations_allowed_are_stored_exactly(
    collector_url: str,
) -> None:
    kept = _marked()
    now = utc_now()
    usage = [
        usage_event(now, model=kept, cost_usd=MAX_COST_USD, latency_ms=MAX_DURATION_MS)
        for _ in range(2)
    ]
    runs = [run_event(now, workflow_id=kept, duration_ms=MAX_DURATION_MS) for _ in range(2)]

    async with httpx.AsyncClient(base_url=collector_url, timeout=10) as http:
        stored = await http.post("/events", json={"usage": usage, "runs": runs})
        models = (await http.get("/analytics/models")).json()["models"]
        workflows = (await http.get("/analytics/workflows")).json()["workflows"]

    assert stored.status_code == 200, stored.text
    line = next(m for m in models if m["model"] == kept)
    assert line["cost_usd"] == 2 * MAX_COST_USD
    assert line["mean_latency_ms"] == MAX_DURATION_MS
    assert next(w for w in workflows if w["workflow_id"] == kept)["runs"] == 2


@pytest.mark.parametrize("field", USAGE_TEXT)
async def test_a_nul_in_usage_text_is_a_400_naming_the_field(
    collector_url: str, field: str
) -> None:
    kept = _marked()
    bad = usage_event(utc_now(), **{field: "before\u0000after"})
    batch = {"usage": [usage_event(utc_now(), model=kept), bad]}

    response = await _refused(collector_url, batch)

    assert _field(response) == f"usage[1].{field}"
    assert kept not in await _models(collector_url)


@pytest.mark.parametrize("field", RUN_TEXT)
async def test_a_nul_in_run_text_is_a_400_naming_the_field(collector_url: str, field: str) -> None:
    kept = _marked()
    bad = run_event(utc_now(), **{field: "\u0000"})
    batch = {"usage": [usage_event(utc_now(), model=kept)], "runs": [bad]}

    response = await _refused(collector_url, batch)

    assert _field(response) == f"runs[0].{field}"
    assert kept not in await _models(collector_url)


@pytest.mark.parametrize("store", STORES)
async def test_from_kafka_they_are_dead_letters_with_the_reason(
    kafka_bootstrap: str,
    topics: Topics,
    start_collector: Callable[..., ServiceProcess],
    store: str,
) -> None:
    # The store may hold other tests' rows: this test's calls carry a model of their own.
    extra = {"ANALYTICS_DATABASE_URL": POSTGRES_DSN} if store == "postgres" else {}
    collector = start_collector(**extra)
    kept = _marked()
    good = [usage_event(utc_now(), model=kept, cost_usd=0.25) for _ in range(3)]
    costly = usage_event(utc_now(), event_id="too-costly", model=kept, cost_usd=1e9)
    nul = usage_event(utc_now(), event_id="nul-model", model=f"{kept}\u0000")
    edge = {**usage_event(utc_now(), event_id="edge-time"), "timestamp": "9999-12-31T23:30-01:00"}

    await produce(
        kafka_bootstrap,
        topics.usage,
        [msgspec.json.encode(e) for e in (good[0], costly, good[1], nul, edge, good[2])],
    )
    line = await wait_until(
        lambda: _model_line(collector.url, kept), lambda found: found["llm_calls"] >= len(good)
    )
    letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await read_topic(kafka_bootstrap, topics.dlq, 3)
    ]

    assert (line["llm_calls"], line["cost_usd"]) == (len(good), 0.75)
    by_event = {
        event_id: letter
        for letter in letters
        for event_id in ("too-costly", "nul-model", "edge-time")
        if event_id in letter.original
    }
    assert sorted(by_event) == ["edge-time", "nul-model", "too-costly"]
    assert {letter.error_type for letter in letters} == {"invalid_usage"}
    assert "cost_usd" in by_event["too-costly"].error
    assert "model" in by_event["nul-model"].error
    assert "timestamp" in by_event["edge-time"].error


async def _model_line(url: str, model: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get("/analytics/models")
        response.raise_for_status()
        found = [line for line in response.json()["models"] if line["model"] == model]
        return found[0] if found else {"llm_calls": 0, "cost_usd": 0.0}


@pytest.mark.parametrize("store", STORES)
async def test_documents_from_kafka_count_whatever_their_key_and_never_past_the_calendar(
    kafka_bootstrap: str,
    topics: Topics,
    start_collector: Callable[..., ServiceProcess],
    store: str,
) -> None:
    """A failed document whose key holds a NUL still counts (PostgreSQL refused its run id at
    every try, and the consumer stayed on its batch); a result stamped at the calendar's edge
    is a dead letter, not a batch no store can take."""
    extra = {"ANALYTICS_DATABASE_URL": POSTGRES_DSN} if store == "postgres" else {}
    collector = start_collector(**extra)
    workflow = "kafka_llm_processor.sentiment"
    before = (await _workflow_lines(collector.url)).get(workflow, (0, 0))
    letter = DeadLetter(
        error="model \u0000 down",
        error_type="TransientLLMError",
        attempts=4,
        topic="financial-documents",
        partition=0,
        offset=7,
        key="doc\u0000-1",
        original=msgspec.json.encode({"doc_id": "doc-1", "task": "sentiment"}).decode(),
        failed_at=utc_now(),
    )
    edge = DocumentResult(
        doc_id="edge-time",
        task="sentiment",
        status="ok",
        answer="positive",
        model="m",
        prompt_tokens=1,
        completion_tokens=1,
        processing_ms=1.0,
        attempts=1,
        source_offset="financial-documents/0/8",
        processed_at=datetime(9999, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-1))),
    )

    await produce(kafka_bootstrap, topics.documents_dlq, [msgspec.json.encode(letter)])
    await produce(kafka_bootstrap, topics.llm_results, [msgspec.json.encode(edge)])
    counted = await wait_until(
        lambda: _workflow_lines(collector.url), lambda found: found.get(workflow, (0, 0)) != before
    )
    [refused] = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await read_topic(kafka_bootstrap, topics.dlq, 1)
    ]

    assert counted[workflow] == (before[0] + 1, before[1])  # one run more, a failure
    assert refused.error_type == "invalid_llm_results"
    assert "timestamp" in refused.error
    assert "edge-time" in refused.original


async def _workflow_lines(url: str) -> dict[str, tuple[int, int]]:
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.get("/analytics/workflows")
        response.raise_for_status()
        return {w["workflow_id"]: (w["runs"], w["successes"]) for w in response.json()["workflows"]}
