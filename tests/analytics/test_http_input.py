"""Bad input over HTTP gets a 4xx naming what was wrong; writes need the token when set."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.analytics.conftest import CollectorFactory, run_event, usage_event, utc_now

BAD_QUERIES = [
    ("/analytics/costs", {"group_by": "colour"}, "group_by"),
    ("/analytics/costs", {"from": "yesterday"}, "from"),
    ("/analytics/models", {"to": "2025-13-45T00:00:00Z"}, "to"),
    (
        "/analytics/workflows",
        {"from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
        "from",
    ),
    ("/analytics/trends", {}, "metric"),
    ("/analytics/trends", {"metric": "happiness"}, "metric"),
    ("/analytics/trends", {"metric": "runs", "bucket": "2m"}, "bucket"),
    (
        "/analytics/trends",
        {"metric": "runs", "bucket": "1m", "from": "2015-01-01T00:00Z"},
        "bucket",
    ),
    ("/analytics/trends", {"metric": "cost", "model": ""}, "model"),
    # PostgreSQL cannot hold NUL in text: a filter with one is refused, not a 500.
    ("/analytics/trends", {"metric": "llm_errors", "model": "a\x00b"}, "model"),
    ("/analytics/trends", {"metric": "runs", "workflow_id": "\x00"}, "workflow_id"),
    ("/analytics/scores", {"workflow_id": "a\x00b"}, "workflow_id"),
    ("/reports/export", {"format": "xml"}, "format"),
    ("/reports/export", {"kind": "everything"}, "kind"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_QUERIES)
async def test_bad_query_parameters_are_named_in_a_400(
    collector: AsyncTestClient[Any], path: str, params: dict[str, str], field: str
) -> None:
    response = await collector.get(path, params=params)

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert field in body["detail"], body
    # A value that is present but wrong is also listed by field (a missing one only named).
    if params.get(field) is not None or field in ("from", "bucket"):
        assert field in {e["field"] for e in body["errors"]}, body


@pytest.mark.parametrize(
    ("path", "params", "period"),
    [
        # Within a day of the calendar's ends a time overflows once in UTC (it was a 500).
        (
            "/analytics/costs",
            {"from": "0001-01-01T00:30:00+01:00", "to": "1970-01-02T00:00:00Z"},
            ("1970-01-01T00:00:00Z", "1970-01-02T00:00:00Z"),
        ),
        (
            "/analytics/models",
            {"from": "2199-12-31T00:00:00Z", "to": "9999-12-31T23:59:59-01:00"},
            ("2199-12-31T00:00:00Z", "2200-01-01T00:00:00Z"),
        ),
        (
            "/analytics/trends",
            {"metric": "runs", "bucket": "1d", "from": "1900-01-01", "to": "1970-01-03"},
            ("1970-01-01T00:00:00Z", "1970-01-03T00:00:00Z"),
        ),
    ],
)
async def test_a_window_past_the_times_events_hold_is_cut_to_them(
    collector: AsyncTestClient[Any], path: str, params: dict[str, str], period: tuple[str, str]
) -> None:
    response = await collector.get(path, params=params)

    assert response.status_code == 200, response.text
    assert (response.json()["period"]["start"], response.json()["period"]["end"]) == period


async def test_rollup_needs_an_hour_boundary(collector: AsyncTestClient[Any]) -> None:
    response = await collector.post("/admin/rollup", params={"before": "2025-01-01T10:30:00Z"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "before"


def _with(**changes: Any) -> dict[str, Any]:
    return usage_event(utc_now(), **changes)


BAD_BATCHES = [
    ({"usage": [_with(prompt_tokens=-1)]}, "prompt_tokens"),
    ({"usage": [_with(status="maybe")]}, "status"),
    ({"usage": [_with(timestamp="2025-01-01T10:00:00")]}, "timestamp"),
    ({"usage": [_with(timestamp="9999-12-31T23:30:00-01:00")]}, "usage[1].timestamp"),
    ({"runs": [run_event(utc_now(), timestamp="1969-07-20T20:17:00Z")]}, "runs[0].timestamp"),
    ({"usage": [_with(event_id="")]}, "event_id"),
    ({"usage": [{k: v for k, v in _with().items() if k != "model"}]}, "model"),
    ({"runs": [run_event(utc_now(), status="done")]}, "status"),
    ({"usage": [], "events": []}, "events"),
]


@pytest.mark.parametrize(("batch", "field"), BAD_BATCHES)
async def test_a_bad_batch_is_refused_whole_naming_the_field(
    collector: AsyncTestClient[Any], batch: dict[str, Any], field: str
) -> None:
    good = _with()
    batch = {**batch, "usage": [good, *batch.get("usage", [])]}

    response = await collector.post("/events", json=batch)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]
    total = (await collector.get("/analytics/costs")).json()["total"]
    assert total["llm_calls"] == 0


async def test_a_body_that_is_not_json_is_a_400(collector: AsyncTestClient[Any]) -> None:
    response = await collector.post(
        "/events", content=b"{not json", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert "JSON" in response.json()["detail"]


async def test_a_body_nested_too_deep_is_a_400(collector: AsyncTestClient[Any]) -> None:
    """The batch is read by the service's own decoder, past Litestar's handling of a body
    nested deeper than msgspec reads: its RecursionError was a 500."""
    deep = b'{"usage": [{"extra": ' + b"[" * 5000 + b"]" * 5000 + b"}]}"

    response = await collector.post(
        "/events", content=deep, headers={"content-type": "application/json"}
    )

    assert response.status_code == 400, response.text
    assert response.json()["detail"] == "body: nested too deep to read"


async def test_a_too_large_batch_is_a_413(make_collector: CollectorFactory) -> None:
    collector = await make_collector(max_body_bytes=2048)

    response = await collector.post("/events", json={"usage": [_with() for _ in range(20)]})

    assert response.status_code == 413


async def test_writes_need_the_token_reads_do_not(make_collector: CollectorFactory) -> None:
    collector = await make_collector(token="s3cret-token")
    batch = {"usage": [_with(cost_usd=0.5)]}

    refused = await collector.post("/events", json=batch)
    wrong = await collector.post("/events", json=batch, headers={"Authorization": "Bearer not-it"})
    accepted = await collector.post(
        "/events", json=batch, headers={"Authorization": "Bearer s3cret-token"}
    )
    rollup = await collector.post("/admin/rollup", params={"before": "2020-01-01T00:00:00Z"})
    read = await collector.get("/analytics/costs")

    assert (refused.status_code, wrong.status_code, accepted.status_code) == (401, 401, 200)
    assert rollup.status_code == 401
    assert read.status_code == 200
    assert read.json()["total"]["cost_usd"] == 0.5


async def test_health_and_metrics_say_what_was_stored(collector: AsyncTestClient[Any]) -> None:
    now = utc_now()
    event = usage_event(now, model="m1", workflow_id="wf", cost_usd=0.125, prompt_tokens=7)
    runs = [run_event(now, workflow_id="wf", status=s) for s in ("success", "success", "error")]
    await collector.post("/events", json={"usage": [event, event], "runs": runs})

    health = (await collector.get("/health")).json()
    metrics = (await collector.get("/metrics")).text

    assert health["status"] == "healthy"
    assert health["details"]["store_open"] is True
    assert 'llm_cost_total{model="m1",workflow_id="wf"} 0.125' in metrics
    assert 'llm_tokens_total{kind="prompt",model="m1"} 7.0' in metrics
    assert 'workflow_executions_total{status="success",workflow_id="wf"} 2.0' in metrics
    assert 'pas_analytics_events_duplicate_total{kind="usage"} 1.0' in metrics
    assert "workflow_duration_seconds_bucket" in metrics
