"""Cost, workflow, model and trend answers for a known set of events, checked against totals
computed here independently (Python and numpy over the events as sent). Each test runs on
DuckDB, and on PostgreSQL when PAS_TEST_POSTGRES_DSN is set."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy
import pytest
from litestar.testing import AsyncTestClient

from tests.analytics.conftest import known_events, run_event, usage_event, utc_now

GROUP_FIELDS = {
    "model": "model",
    "workflow": "workflow_id",
    "provider": "provider",
    "capability": "capability",
    "service": "service",
    "desk": "desk",
}


def expected_costs(usage: list[dict[str, Any]], field: str) -> dict[str | None, dict[str, Any]]:
    groups: dict[str | None, dict[str, Any]] = defaultdict(
        lambda: {
            "llm_calls": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "cache_write_tokens": 0,
            "cost": Decimal(0),
        }
    )
    for event in usage:
        group = groups[event.get(field)]
        group["llm_calls"] += 1
        group["prompt_tokens"] += event["prompt_tokens"]
        group["completion_tokens"] += event["completion_tokens"]
        group["cached_tokens"] += event.get("cached_tokens", 0)
        group["cache_write_tokens"] += event.get("cache_write_tokens", 0)
        group["cost"] += Decimal(str(event["cost_usd"]))
    return groups


def percentile(values: list[float], q: float) -> float:
    # quantile_cont / percentile_cont interpolate linearly, as numpy does by default.
    return float(numpy.percentile(values, q * 100))


async def send(collector: AsyncTestClient[Any], usage: list[Any], runs: list[Any]) -> None:
    response = await collector.post("/events", json={"usage": usage, "runs": runs})
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == len(usage) + len(runs)


async def test_costs_match_totals_computed_independently(
    collector: AsyncTestClient[Any],
) -> None:
    usage, runs = known_events(utc_now())
    await send(collector, usage, runs)

    for group_by, field in GROUP_FIELDS.items():
        answer = (await collector.get("/analytics/costs", params={"group_by": group_by})).json()
        expected = expected_costs(usage, field)
        got = {line["key"]: line for line in answer["groups"]}
        assert set(got) == set(expected), group_by
        for key, want in expected.items():
            line = got[key]
            assert line["llm_calls"] == want["llm_calls"]
            assert line["prompt_tokens"] == want["prompt_tokens"]
            assert line["completion_tokens"] == want["completion_tokens"]
            assert line["cached_tokens"] == want["cached_tokens"]
            assert line["cache_write_tokens"] == want["cache_write_tokens"]
            assert line["total_tokens"] == want["prompt_tokens"] + want["completion_tokens"]
            assert Decimal(str(line["cost_usd"])) == want["cost"]
        costs = [line["cost_usd"] for line in answer["groups"]]
        assert costs == sorted(costs, reverse=True)
        assert answer["total"]["llm_calls"] == len(usage)
        assert answer["total"]["prompt_tokens"] == sum(e["prompt_tokens"] for e in usage)
        assert answer["total"]["cached_tokens"] == sum(e["cached_tokens"] for e in usage) > 0
        written = sum(e["cache_write_tokens"] for e in usage)
        assert answer["total"]["cache_write_tokens"] == written > 0
        assert Decimal(str(answer["total"]["cost_usd"])) == sum(
            (Decimal(str(e["cost_usd"])) for e in usage), Decimal(0)
        )


async def test_workflow_stats_match_the_runs_sent(collector: AsyncTestClient[Any]) -> None:
    usage, runs = known_events(utc_now())
    await send(collector, usage, runs)

    answer = (await collector.get("/analytics/workflows")).json()

    by_id = {w["workflow_id"]: w for w in answer["workflows"]}
    assert set(by_id) == {r["workflow_id"] for r in runs} | {
        e["workflow_id"] for e in usage if e.get("workflow_id")
    }
    for workflow_id, stats in by_id.items():
        mine = [r for r in runs if r["workflow_id"] == workflow_id]
        ok = [r for r in mine if r["status"] == "success"]
        calls = [e for e in usage if e.get("workflow_id") == workflow_id]
        durations = [r["duration_ms"] for r in mine]
        assert stats["runs"] == len(mine)
        assert stats["successes"] == len(ok)
        assert stats["failures"] == len(mine) - len(ok)
        assert stats["success_rate"] == pytest.approx(len(ok) / len(mine), abs=1e-6)
        for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
            assert stats["duration_ms"][name] == pytest.approx(percentile(durations, q), abs=1e-3)
        assert stats["llm_calls"] == len(calls)
        assert stats["tokens"] == sum(e["prompt_tokens"] + e["completion_tokens"] for e in calls)
        assert Decimal(str(stats["cost_usd"])) == sum(
            (Decimal(str(e["cost_usd"])) for e in calls), Decimal(0)
        )


async def test_model_stats_match_the_calls_sent(collector: AsyncTestClient[Any]) -> None:
    usage, runs = known_events(utc_now())
    await send(collector, usage, runs)

    answer = (await collector.get("/analytics/models")).json()

    assert {m["model"] for m in answer["models"]} == {e["model"] for e in usage}
    for stats in answer["models"]:
        calls = [e for e in usage if e["model"] == stats["model"]]
        ok = [e for e in calls if e["status"] == "ok"]
        errors = len(calls) - len(ok)
        latencies = [e["latency_ms"] for e in calls]
        assert stats["llm_calls"] == len(calls)
        assert stats["errors"] == errors
        assert stats["error_rate"] == pytest.approx(errors / len(calls), abs=1e-6)
        assert stats["mean_latency_ms"] == pytest.approx(sum(latencies) / len(calls), abs=1e-3)
        assert stats["latency_ms"]["p95"] == pytest.approx(percentile(latencies, 0.95), abs=1e-3)
        assert stats["tokens_per_s"] == pytest.approx(
            sum(e["completion_tokens"] for e in ok) / (sum(e["latency_ms"] for e in ok) / 1000),
            rel=1e-4,
        )


async def test_trends_bucket_the_events_by_time(collector: AsyncTestClient[Any]) -> None:
    end = utc_now().replace(second=0, microsecond=0)
    start = end - timedelta(minutes=30)
    usage = [
        usage_event(
            start + timedelta(minutes=minute, seconds=5), cost_usd=0.001 * n, model=model, desk=desk
        )
        for minute, n, model, desk in (
            (1, 1, "a", "rates"),
            (1, 2, "b", "fx"),
            (7, 3, "a", None),
            (29, 4, "a", "fx"),
        )
    ]
    runs = [
        run_event(start + timedelta(minutes=1, seconds=1), status="success", duration_ms=100.0),
        run_event(start + timedelta(minutes=1, seconds=2), status="error", duration_ms=300.0),
        run_event(start + timedelta(minutes=7, seconds=3), status="success", duration_ms=500.0),
    ]
    await send(collector, usage, runs)
    window = {"from": start.isoformat(), "to": end.isoformat(), "bucket": "1m"}

    async def series(metric: str, **extra: str) -> dict[datetime, float | None]:
        response = await collector.get(
            "/analytics/trends", params={**window, "metric": metric, **extra}
        )
        assert response.status_code == 200, response.text
        points = response.json()["points"]
        assert len(points) == 30
        return {datetime.fromisoformat(p["t"]): p["value"] for p in points}

    minute = {n: start + timedelta(minutes=n) for n in (0, 1, 7, 29)}
    calls = await series("llm_calls")
    assert (calls[minute[0]], calls[minute[1]], calls[minute[7]], calls[minute[29]]) == (0, 2, 1, 1)
    assert sum(v or 0 for v in calls.values()) == 4
    cost = await series("cost", model="a")
    assert cost[minute[1]] == pytest.approx(0.001)
    assert cost[minute[29]] == pytest.approx(0.004)
    fx = await series("cost", desk="fx")
    assert (fx[minute[1]], fx[minute[7]], fx[minute[29]]) == pytest.approx((0.002, 0, 0.004))
    fx_a = await series("llm_calls", desk="fx", model="a")
    assert sum(v or 0 for v in fx_a.values()) == 1
    rate = await series("success_rate")
    assert rate[minute[0]] is None
    assert rate[minute[1]] == pytest.approx(0.5)
    assert rate[minute[7]] == pytest.approx(1.0)
    p50 = await series("duration_p50")
    assert p50[minute[1]] == pytest.approx(200.0)


async def test_latest_outcome_of_a_run_counts_once(collector: AsyncTestClient[Any]) -> None:
    now = utc_now()
    failed = run_event(now - timedelta(minutes=5), run_id="r-1", status="error")
    resumed = run_event(now - timedelta(minutes=1), run_id="r-1", status="success")

    await send(collector, [], [failed])
    second = (await collector.post("/events", json={"runs": [resumed]})).json()
    late_copy = (await collector.post("/events", json={"runs": [failed]})).json()

    stats = (await collector.get("/analytics/workflows")).json()["workflows"]
    assert second["stored"] == 1
    assert late_copy == {"received": 1, "stored": 0, "duplicates": 1}
    assert [(w["runs"], w["successes"]) for w in stats] == [(1, 1)]
