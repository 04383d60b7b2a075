"""A store made before usage events had desks, cached tokens or cache writes opens as it is:
its rows, raw and rolled up, count as calls of no desk with nothing cached or written, calls of
desks are stored beside them, and an hour rolled up before holds a row per desk after, names
as long as the wire types allow included (PostgreSQL's hourly table, keyed by the names before,
is keyed by their digest once it opens). On DuckDB, and on PostgreSQL when
PAS_TEST_POSTGRES_DSN is set; from the layouts before desks, before cached tokens and before
cache writes."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from litestar.testing import AsyncTestClient

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests.analytics.conftest import (
    LONG_NAMED,
    NO_POSTGRES,
    PG_OBJECTS,
    POSTGRES_DSN,
    long_name,
    usage_event,
    utc_now,
)

# The two usage tables as the stores created them before desks (in the DuckDB dialect; the
# PostgreSQL one differs in its type names only), and what a layout after that added.
_USAGE_BEFORE = """CREATE TABLE pas_analytics_usage (
    event_id {text} NOT NULL, ts TIMESTAMPTZ NOT NULL, service {text} NOT NULL,
    provider {text} NOT NULL, model {text} NOT NULL, capability {text}, workflow_id {text},
    run_id {text}, request_id {text}, prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL, latency_ms {double} NOT NULL,
    cost_usd DECIMAL(18,10) NOT NULL, status {text} NOT NULL, error {text}{desk}{cached}{key})"""
_HOURLY_BEFORE = """CREATE TABLE pas_analytics_usage_hourly (
    hour TIMESTAMPTZ NOT NULL, service {text} NOT NULL, provider {text} NOT NULL,
    model {text} NOT NULL, capability {text} NOT NULL, workflow_id {text} NOT NULL,
    status {text} NOT NULL, calls BIGINT NOT NULL, prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL, cost_usd DECIMAL(38,10) NOT NULL,
    latency_ms_sum {double} NOT NULL{hourly_desk}{hourly_cached},
    PRIMARY KEY (hour, service, provider, model, capability, workflow_id, status{key_desk}))"""
_DESKS = {
    "desk": ", desk {text}",
    "hourly_desk": ", desk {text} NOT NULL DEFAULT ''",
    "key_desk": ", desk",
}
_NONE_CACHED = {"cached": "", "hourly_cached": ""}
LAYOUTS = {
    "before desks": {"desk": "", "hourly_desk": "", "key_desk": "", **_NONE_CACHED},
    "before cached tokens": {**_DESKS, **_NONE_CACHED},
    "before cache writes": {
        **_DESKS,
        "cached": ", cached_tokens INTEGER NOT NULL DEFAULT 0",
        "hourly_cached": ", cached_tokens BIGINT NOT NULL DEFAULT 0",
    },
}
_RAW_ROW = (
    "INSERT INTO pas_analytics_usage (event_id, ts, service, provider, model, prompt_tokens, "
    "completion_tokens, latency_ms, cost_usd, status) "
    "VALUES ('before', '{at}', 'provider_router', 'local', 'm', 10, 5, 100, 0.5, 'ok')"
)
_HOURLY_ROW = (
    "INSERT INTO pas_analytics_usage_hourly (hour, service, provider, model, capability, "
    "workflow_id, status, calls, prompt_tokens, completion_tokens, cost_usd, latency_ms_sum) "
    "VALUES ('{hour}', 'provider_router', 'local', 'm', '', '', 'ok', 4, 40, 20, 2.0, 400)"
)


_HOURLY_COLUMNS_BEFORE = (
    "hour, service, provider, model, capability, workflow_id, status, calls, prompt_tokens, "
    "completion_tokens, cost_usd, latency_ms_sum"
)
_HISTORY_VIEW_BEFORE = f"""CREATE VIEW pas_analytics_usage_by_hour AS
    SELECT {_HOURLY_COLUMNS_BEFORE} FROM pas_analytics_usage_hourly
    UNION ALL
    SELECT {_HOURLY_COLUMNS_BEFORE} FROM (
        SELECT date_trunc('hour', ts) AS hour, service, provider, model,
               coalesce(capability, '') AS capability, coalesce(workflow_id, '') AS workflow_id,
               status, count(*) AS calls, sum(prompt_tokens) AS prompt_tokens,
               sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd,
               sum(latency_ms) AS latency_ms_sum
        FROM pas_analytics_usage GROUP BY 1, 2, 3, 4, 5, 6, 7
    ) recent""".encode()


def _older_store(
    layout: str, text: str, double: str, key: str, hour: datetime, at: datetime
) -> list[str]:
    added = {name: part.format(text=text) for name, part in LAYOUTS[layout].items()}
    return [
        _USAGE_BEFORE.format(
            text=text, double=double, key=key, desk=added["desk"], cached=added["cached"]
        ),
        _HOURLY_BEFORE.format(
            text=text,
            double=double,
            **{name: added[name] for name in ("hourly_desk", "hourly_cached", "key_desk")},
        ),
        _RAW_ROW.format(at=at.isoformat()),
        _HOURLY_ROW.format(hour=hour.isoformat()),
    ]


@pytest.fixture(params=LAYOUTS)
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(
    params=[
        "duckdb",
        pytest.param(
            "postgres",
            marks=[pytest.mark.postgres, pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES)],
        ),
    ]
)
async def older_store(
    request: pytest.FixtureRequest, layout: str, tmp_path: Path
) -> tuple[AnalyticsSettings, datetime]:
    """Collector settings on a store holding, in an older layout, a raw call (30 minutes ago)
    and four calls rolled up into the hour two hours back; and that hour."""
    now = utc_now()
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
    at = now - timedelta(minutes=30)
    path = tmp_path / "analytics.duckdb"
    database_url = None
    if request.param == "postgres":
        import psycopg  # noqa: PLC0415

        async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
            for statement in PG_OBJECTS:
                await conn.execute(statement)
            key = ", PRIMARY KEY (event_id, ts)"
            for statement in _older_store(layout, "TEXT", "DOUBLE PRECISION", key, hour, at):
                await conn.execute(statement.encode())
            # The history view (what Grafana reads) over the older table, its columns as then.
            await conn.execute(_HISTORY_VIEW_BEFORE)
        database_url = POSTGRES_DSN
    else:
        with duckdb.connect(str(path)) as db:
            for statement in _older_store(layout, "VARCHAR", "DOUBLE", "", hour, at):
                db.execute(statement)
    settings = AnalyticsSettings(
        db_path=str(path),
        database_url=database_url,
        consume=False,
        raw_retention_s=0,
        log_level="WARNING",
    )
    return settings, hour


async def _by_desk(collector: AsyncTestClient[Any], start: datetime) -> dict[str | None, Any]:
    answer = await collector.get(
        "/analytics/costs", params={"group_by": "desk", "from": start.isoformat()}
    )
    assert answer.status_code == 200, answer.text
    return {
        g["key"]: (g["llm_calls"], g["cost_usd"], g["cached_tokens"], g["cache_write_tokens"])
        for g in answer.json()["groups"]
    }


async def test_an_older_store_keeps_its_rows_and_takes_the_columns_added_since(
    older_store: tuple[AnalyticsSettings, datetime], open_app: Any
) -> None:
    settings, hour = older_store
    collector: AsyncTestClient[Any] = await open_app(create_app(settings))
    start = hour - timedelta(hours=1)

    before = await _by_desk(collector, start)
    late = hour + timedelta(minutes=5)  # into the hour rolled up before
    # Every name the hourly row is kept by as long as it can be, in 4-byte characters: more
    # than the older PostgreSQL key could hold.
    rng = random.Random(3)
    long_names = {field: long_name(rng) for field in LONG_NAMED}
    sent = await collector.post(
        "/events",
        json={
            "usage": [
                usage_event(late, model="m", cost_usd=0.25, desk="rates", cached_tokens=3),
                usage_event(
                    late,
                    model="m",
                    cost_usd=0.25,
                    desk="rates",
                    cached_tokens=4,
                    cache_write_tokens=2,
                ),
                usage_event(late, model="m", cost_usd=0.125),
                usage_event(late, cost_usd=0.0625, **long_names),
                usage_event(
                    utc_now(),
                    model="m",
                    cost_usd=1.0,
                    desk="fx",
                    cached_tokens=6,
                    cache_write_tokens=5,
                ),
            ]
        },
    )
    rolled = await collector.post(
        "/admin/rollup", params={"before": (hour + timedelta(hours=1)).isoformat()}
    )
    after = await _by_desk(collector, start)
    export = await collector.get(
        "/reports/export",
        params={"kind": "usage_hourly", "format": "json", "from": start.isoformat()},
    )

    assert before == {None: (5, pytest.approx(2.5), 0, 0)}
    assert sent.json()["stored"] == 5
    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["usage_rows"] == 4
    assert after == {
        None: (6, pytest.approx(2.625), 0, 0),
        "rates": (2, pytest.approx(0.5), 7, 2),
        "fx": (1, pytest.approx(1.0), 6, 5),
        long_names["desk"]: (1, pytest.approx(0.0625), 0, 0),
    }
    rows = [json.loads(line) for line in export.text.splitlines()]
    got = sorted((r["desk"], r["calls"], r["cached_tokens"], r["cache_write_tokens"]) for r in rows)
    assert got == [("", 5, 0, 0), ("rates", 2, 7, 2), (long_names["desk"], 1, 0, 0)]
    (long_row,) = (r for r in rows if r["desk"] == long_names["desk"])
    assert {field: long_row[field] for field in LONG_NAMED} == long_names
