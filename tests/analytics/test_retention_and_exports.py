"""Retention keeps totals exact; exports stream rows that read back to what was stored.
On DuckDB, and on PostgreSQL when PAS_TEST_POSTGRES_DSN is set."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pyarrow.parquet
import pytest
from litestar.testing import AsyncTestClient

from tests.analytics.conftest import (
    LONG_NAMED,
    CollectorFactory,
    known_events,
    long_name,
    run_event,
    usage_event,
    utc_now,
)


def hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


async def snapshot(collector: AsyncTestClient[Any], start: datetime, end: datetime) -> Any:
    """Every total the API gives for the window: costs by each grouping, runs per workflow,
    and hourly trends of calls, cost and runs."""
    window = {"from": start.isoformat(), "to": end.isoformat()}
    costs = {
        group_by: (
            await collector.get("/analytics/costs", params={**window, "group_by": group_by})
        ).json()["groups"]
        for group_by in ("model", "workflow", "provider", "capability", "desk")
    }
    workflows = [
        (w["workflow_id"], w["runs"], w["successes"], w["llm_calls"], w["tokens"], w["cost_usd"])
        for w in (await collector.get("/analytics/workflows", params=window)).json()["workflows"]
    ]
    trends = {
        metric: (
            await collector.get(
                "/analytics/trends", params={**window, "metric": metric, "bucket": "1h"}
            )
        ).json()["points"]
        for metric in ("llm_calls", "cost", "tokens", "runs", "failures", "success_rate")
    }
    return costs, workflows, trends


async def test_rollup_keeps_every_total(collector: AsyncTestClient[Any]) -> None:
    now = utc_now()
    usage, runs = known_events(now, spread_h=6)
    cutoff = hour_floor(now) - timedelta(hours=2)
    # Empty names, which a rollup keeps as absent ones: neither group may change.
    usage += [
        usage_event(cutoff - timedelta(minutes=30), capability="", workflow_id="", desk=""),
        usage_event(cutoff - timedelta(minutes=20), capability=None, workflow_id=None, desk=None),
    ]
    await collector.post("/events", json={"usage": usage, "runs": runs})
    start, end = hour_floor(now) - timedelta(hours=7), now + timedelta(minutes=1)
    before = await snapshot(collector, start, end)
    older = [e for e in usage if datetime.fromisoformat(e["timestamp"]) < cutoff]
    older_runs = [r for r in runs if datetime.fromisoformat(r["timestamp"]) < cutoff]

    rolled = await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})

    assert rolled.status_code == 200, rolled.text
    assert rolled.json()["usage_rows"] == len(older) > 0
    assert rolled.json()["run_rows"] == len(older_runs) > 0
    assert await snapshot(collector, start, end) == before
    # Percentiles need raw rows: the rolled-up hours have none left.
    rolled_only = {"from": start.isoformat(), "to": cutoff.isoformat()}
    workflows = (await collector.get("/analytics/workflows", params=rolled_only)).json()
    assert all(w["duration_ms"]["p50"] is None for w in workflows["workflows"])
    assert sum(w["runs"] for w in workflows["workflows"]) == len(older_runs)


async def test_roll_ups_during_ingest_lose_and_double_nothing(
    collector: AsyncTestClient[Any],
) -> None:
    """Usage and outcomes are written side by side (on DuckDB, one writer each) while
    roll-ups, which touch both, run too: every batch is stored, each row counted once, raw or
    rolled up."""
    now = utc_now()
    batches = [known_events(now, count=300, runs=150, seed=seed, spread_h=6) for seed in range(6)]
    cutoffs = [hour_floor(now) - timedelta(hours=hours) for hours in (4, 3, 2)]

    answers = await asyncio.gather(
        *(collector.post("/events", json={"usage": u, "runs": r}) for u, r in batches),
        *(collector.post("/admin/rollup", params={"before": c.isoformat()}) for c in cutoffs),
    )

    assert [a.status_code for a in answers] == [200] * len(answers), [a.text for a in answers]
    assert sum(a.json()["stored"] for a in answers[: len(batches)]) == sum(
        len(u) + len(r) for u, r in batches
    )
    window = {
        "from": (hour_floor(now) - timedelta(hours=7)).isoformat(),
        "to": (now + timedelta(minutes=1)).isoformat(),
    }
    costs = (await collector.get("/analytics/costs", params={**window, "group_by": "model"})).json()
    assert sum(line["llm_calls"] for line in costs["groups"]) == sum(len(u) for u, _ in batches)
    workflows = (await collector.get("/analytics/workflows", params=window)).json()["workflows"]
    assert sum(w["runs"] for w in workflows) == sum(len(r) for _, r in batches)


async def test_late_events_for_rolled_hours_add_to_them(collector: AsyncTestClient[Any]) -> None:
    now = utc_now()
    cutoff = hour_floor(now) - timedelta(hours=1)
    early = cutoff - timedelta(minutes=30)
    first = [usage_event(early, cost_usd=0.25, model="m", desk="rates") for _ in range(3)]
    await collector.post("/events", json={"usage": first})
    await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})
    late = [usage_event(early, cost_usd=0.5, model="m", desk="rates") for _ in range(2)]
    late.append(usage_event(early, cost_usd=0.125, model="m"))  # no desk: a row of its own

    await collector.post("/events", json={"usage": late})
    again = (await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})).json()

    total = (await collector.get("/analytics/costs")).json()["total"]
    assert again["usage_rows"] == 3
    assert (total["llm_calls"], total["cost_usd"]) == (6, pytest.approx(1.875))
    export = await collector.get("/reports/export", params={"kind": "usage_hourly"})
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [(r["model"], r["desk"], int(r["calls"]), Decimal(r["cost_usd"])) for r in rows] == [
        ("m", "", 1, Decimal("0.125")),
        ("m", "rates", 5, Decimal("1.75")),
    ]
    by_desk = (await collector.get("/analytics/costs", params={"group_by": "desk"})).json()
    assert [(g["key"], g["llm_calls"]) for g in by_desk["groups"]] == [("rates", 5), (None, 1)]


async def test_calls_with_the_longest_names_roll_up_with_their_totals(
    collector: AsyncTestClient[Any],
) -> None:
    """Every name an hourly row is kept by as long as the wire types allow, in characters of 4
    bytes (about 6 KiB in all, more than a PostgreSQL index entry holds): the rollup takes
    them, a late call adds to their row, and names that would run together, or differ in
    backslashes only, stay rows of their own."""
    rng = random.Random(11)
    now = utc_now()
    cutoff = hour_floor(now) - timedelta(hours=1)
    early = cutoff - timedelta(minutes=30)
    names = {field: long_name(rng) for field in LONG_NAMED}

    def long_call(cost_usd: float) -> dict[str, Any]:
        return usage_event(
            early,
            event_id=long_name(rng, 128),
            run_id=long_name(rng),
            request_id=long_name(rng),
            cost_usd=cost_usd,
            **names,
        )

    apart = [
        usage_event(early, service="ab", provider="c", model="m\\0", cost_usd=1.0),
        usage_event(early, service="a", provider="bc", model="m\\0", cost_usd=2.0),
        usage_event(early, service="a", provider="bc", model="m\\\\0", cost_usd=4.0),
    ]
    runs = [
        run_event(early, run_id=long_name(rng), workflow_id=names["workflow_id"]) for _ in range(2)
    ]
    await collector.post(
        "/events", json={"usage": [long_call(0.25), long_call(0.5), *apart], "runs": runs}
    )

    rolled = await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})
    await collector.post("/events", json={"usage": [long_call(0.125)]})
    again = await collector.post("/admin/rollup", params={"before": cutoff.isoformat()})

    assert rolled.status_code == 200, rolled.text
    assert (rolled.json()["usage_rows"], rolled.json()["run_rows"]) == (5, 2)
    assert again.json()["usage_rows"] == 1
    export = await collector.get(
        "/reports/export", params={"kind": "usage_hourly", "format": "json"}
    )
    rows = [json.loads(line) for line in export.text.splitlines()]
    assert sorted((r["service"], r["provider"], r["model"], r["calls"]) for r in rows) == sorted(
        [
            (names["service"], names["provider"], names["model"], 3),
            ("ab", "c", "m\\0", 1),
            ("a", "bc", "m\\0", 1),
            ("a", "bc", "m\\\\0", 1),
        ]
    )
    (long_row,) = (r for r in rows if r["model"] == names["model"])
    assert {field: long_row[field] for field in LONG_NAMED} == names
    by_model = (await collector.get("/analytics/costs", params={"group_by": "model"})).json()
    assert {g["key"]: (g["llm_calls"], g["cost_usd"]) for g in by_model["groups"]} == {
        names["model"]: (3, pytest.approx(0.875)),
        "m\\0": (2, pytest.approx(3.0)),
        "m\\\\0": (1, pytest.approx(4.0)),
    }
    workflows = (await collector.get("/analytics/workflows")).json()["workflows"]
    assert [(w["workflow_id"], w["runs"], w["llm_calls"]) for w in workflows] == [
        (names["workflow_id"], 2, 3)
    ]


def _normalised(row: dict[str, Any]) -> tuple[Any, ...]:
    """One usage row whatever format it came in (CSV gives text, Parquet typed values)."""

    def text(value: Any) -> str | None:
        return None if value in (None, "") else str(value)

    moment = row["timestamp"]
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return (
        row["event_id"],
        moment,
        row["service"],
        row["provider"],
        row["model"],
        text(row["capability"]),
        text(row["workflow_id"]),
        int(row["prompt_tokens"]),
        int(row["completion_tokens"]),
        round(float(row["latency_ms"]), 6),
        Decimal(str(row["cost_usd"])).normalize(),
        row["status"],
        text(row.get("desk")),
    )


def _parsed(fmt: str, body: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(body.decode())))
    if fmt == "json":
        return [json.loads(line) for line in body.decode().splitlines()]
    rows: list[dict[str, Any]] = pyarrow.parquet.read_table(io.BytesIO(body)).to_pylist()
    return rows


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
async def test_exports_read_back_to_the_stored_rows(
    make_collector: CollectorFactory, fmt: str
) -> None:
    collector = await make_collector(export_chunk_rows=100)  # many chunks per export
    now = utc_now()
    usage, runs = known_events(now, count=450, runs=30)
    await collector.post("/events", json={"usage": usage, "runs": runs})

    response = await collector.get("/reports/export", params={"format": fmt, "kind": "usage"})
    run_export = await collector.get("/reports/export", params={"format": fmt, "kind": "runs"})

    assert response.status_code == 200, response.text
    assert "attachment" in response.headers["content-disposition"]
    document = (await collector.get("/schema/openapi.json")).json()
    documented = document["paths"]["/reports/export"]["get"]["responses"]["200"]["content"]
    assert response.headers["content-type"].split(";")[0] in documented
    rows = _parsed(fmt, response.content)
    sent = sorted(usage, key=lambda e: (datetime.fromisoformat(e["timestamp"]), e["event_id"]))
    assert [_normalised(r) for r in rows] == [_normalised(e) for e in sent]
    got_runs = _parsed(fmt, run_export.content)
    assert sorted((r["run_id"], r["workflow_id"], r["status"]) for r in got_runs) == sorted(
        (r["run_id"], r["workflow_id"], r["status"]) for r in runs
    )


async def test_an_export_window_selects_rows_by_time(collector: AsyncTestClient[Any]) -> None:
    now = utc_now().replace(microsecond=0)
    inside = usage_event(now - timedelta(minutes=10))
    outside = usage_event(now - timedelta(minutes=90))
    await collector.post("/events", json={"usage": [inside, outside]})

    response = await collector.get(
        "/reports/export",
        params={
            "format": "json",
            "from": (now - timedelta(hours=1)).isoformat(),
            "to": now.isoformat(),
        },
    )

    assert [json.loads(line)["event_id"] for line in response.text.splitlines()] == [
        inside["event_id"]
    ]
