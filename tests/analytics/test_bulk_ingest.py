"""The bulk ingest path: a usage event is stored once per ``(event_id, timestamp)`` whether its
copies come in one batch or in several, on either store, and the metrics count it once; a
DuckDB file written while the usage table had a primary key keeps its rows and its keys."""

from __future__ import annotations

import re
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import msgspec
from litestar.testing import AsyncTestClient

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests.analytics.conftest import CollectorFactory, usage_event, utc_now


def _metric(text: str, line: str) -> float:
    found = re.search(rf"^{re.escape(line)} (\S+)$", text, re.M)
    assert found, f"{line} not in the metrics"
    return float(found[1])


async def _post(collector: AsyncTestClient[Any], usage: list[dict[str, Any]]) -> dict[str, int]:
    response = await collector.post("/events", json={"usage": usage})
    assert response.status_code == 200, response.text
    answer: dict[str, int] = response.json()
    return answer


async def test_copies_in_one_batch_and_across_batches_are_stored_once(
    make_collector: CollectorFactory,
) -> None:
    collector = await make_collector()
    now = utc_now()
    first = usage_event(now - timedelta(minutes=3), model="m-dup", cost_usd=0.5)
    second = usage_event(now - timedelta(minutes=2), model="m-dup", cost_usd=0.25)
    # The same instant written with another offset is the same key.
    shifted = {
        **first,
        "timestamp": (now - timedelta(minutes=3))
        .astimezone(timezone(timedelta(hours=5)))
        .isoformat(),
    }
    # The same id at another time is another call (the key is id and time).
    later = {**first, "timestamp": (now - timedelta(minutes=1)).isoformat(), "cost_usd": 0.125}

    one_batch = await _post(collector, [first, second, first, shifted])
    again = await _post(collector, [second, shifted, later])
    repeat = await _post(collector, [first, second, later])

    total = (await collector.get("/analytics/costs")).json()["total"]
    exported = (await collector.get("/reports/export", params={"format": "json"})).text
    metrics = (await collector.get("/metrics")).text

    assert one_batch == {"received": 4, "stored": 2, "duplicates": 2}
    assert again == {"received": 3, "stored": 1, "duplicates": 2}
    assert repeat == {"received": 3, "stored": 0, "duplicates": 3}
    assert (total["llm_calls"], total["cost_usd"]) == (3, 0.875)
    rows = [msgspec.json.decode(row) for row in exported.splitlines()]
    assert sorted((r["event_id"], r["cost_usd"]) for r in rows) == sorted(
        [(first["event_id"], 0.5), (first["event_id"], 0.125), (second["event_id"], 0.25)]
    )
    assert _metric(metrics, 'pas_analytics_events_stored_total{kind="usage",source="http"}') == 3
    assert _metric(metrics, 'pas_analytics_events_duplicate_total{kind="usage"}') == 7
    assert _metric(metrics, 'llm_requests_total{model="m-dup",status="ok"}') == 3
    assert _metric(metrics, 'llm_cost_total{model="m-dup",workflow_id=""}') == 0.875
    assert _metric(metrics, 'llm_latency_seconds_count{model="m-dup"}') == 3
    assert _metric(metrics, 'llm_latency_seconds_bucket{le="0.1",model="m-dup"}') == 3


# The usage table as the DuckDB store created it before it dropped the primary key.
_KEYED_USAGE = """CREATE TABLE pas_analytics_usage (
    event_id VARCHAR NOT NULL, ts TIMESTAMPTZ NOT NULL, service VARCHAR NOT NULL,
    provider VARCHAR NOT NULL, model VARCHAR NOT NULL, capability VARCHAR,
    workflow_id VARCHAR, run_id VARCHAR, request_id VARCHAR,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    latency_ms DOUBLE NOT NULL, cost_usd DECIMAL(18,10) NOT NULL,
    status VARCHAR NOT NULL, error VARCHAR,
    PRIMARY KEY (event_id, ts))"""


async def test_a_duckdb_file_with_the_keyed_table_keeps_its_rows_and_keys(
    tmp_path: Path, open_app: Any
) -> None:
    path = tmp_path / "older.duckdb"
    now = utc_now()
    old = [
        usage_event(now - timedelta(minutes=10 + i), model="m-old", cost_usd=1.0) for i in range(3)
    ]
    with duckdb.connect(str(path)) as db:
        db.execute(_KEYED_USAGE)
        for event in old:
            db.execute(
                "INSERT INTO pas_analytics_usage (event_id, ts, service, provider, model, "
                "prompt_tokens, completion_tokens, latency_ms, cost_usd, status) "
                "VALUES ($1, $2::TIMESTAMPTZ, 'provider_router', 'local', 'm-old', 1, 1, 1, 1, "
                "'ok')",
                [event["event_id"], event["timestamp"]],
            )
    settings = AnalyticsSettings(
        db_path=str(path), consume=False, raw_retention_s=0, log_level="WARNING"
    )
    collector: AsyncTestClient[Any] = await open_app(create_app(settings))

    fresh = usage_event(now, model="m-old", cost_usd=1.0)
    answer = await _post(collector, [*old, fresh])
    total = (await collector.get("/analytics/costs")).json()["total"]

    assert answer == {"received": 4, "stored": 1, "duplicates": 3}
    assert (total["llm_calls"], total["cost_usd"]) == (4, 4.0)
