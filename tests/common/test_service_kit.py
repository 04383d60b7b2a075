"""What every PAS service gets from the kit: request ids, JSON logs, health and metrics."""

from __future__ import annotations

import json
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from tests.conftest import agent_json


async def test_request_id_is_echoed_or_made(registry: AsyncTestClient[Any]) -> None:
    mine = await registry.get("/agents", headers={"X-Request-ID": "desk-42"})
    made = await registry.get("/agents")
    hostile = await registry.get("/agents", headers={"X-Request-ID": "a b\tc" * 50})

    assert mine.headers["x-request-id"] == "desk-42"
    assert len(made.headers["x-request-id"]) == 32
    assert hostile.headers["x-request-id"] != "a b\tc" * 50


async def test_health_reports_the_service(registry: AsyncTestClient[Any]) -> None:
    body = (await registry.get("/health")).json()

    assert body["status"] == "healthy"
    assert body["port"] == 6121
    assert body["service"] == "registry"
    assert body["details"]["agents"] == {"passing": 0, "critical": 0}


async def test_metrics_count_requests_and_agents(registry: AsyncTestClient[Any]) -> None:
    await registry.post("/register", json=agent_json())
    await registry.post("/discover", json={"capabilities": ["reasoning"]})

    text = (await registry.get("/metrics")).text

    assert 'pas_registry_agents{status="passing"} 1.0' in text
    assert 'pas_requests_total{app_name="registry",method="POST",path="/discover"' in text
    assert "pas_request_duration_seconds_bucket" in text


def test_logs_are_json_lines_with_the_request_id(registry_process_factory: Any) -> None:
    process = registry_process_factory()
    httpx.post(
        f"{process.url}/register", json=agent_json(), headers={"X-Request-ID": "trace-me"}
    ).raise_for_status()
    # Requests on a timer get a line only when they fail.
    httpx.get(f"{process.url}/health").raise_for_status()
    httpx.post(f"{process.url}/agents/llm_llama31_8b/heartbeat").raise_for_status()
    assert httpx.post(f"{process.url}/agents/nobody/heartbeat").status_code == 404
    process.stop()

    lines = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    events = {(line.get("event"), line.get("request_id")) for line in lines}
    assert ("agent registered", "trace-me") in events
    assert all("timestamp" in line and "level" in line for line in lines)
    # One access line a request, PAS's: uvicorn's own is left out (``--no-access-log``).
    access = [line for line in lines if line.get("logger", "").endswith(".access")]
    assert [(line["logger"], line["path"], line["status"]) for line in access] == [
        ("pas.access", "/register", 200),
        ("pas.access", "/agents/nobody/heartbeat", 404),
    ]
    assert ("request", "trace-me") in events
    assert access[0]["client"] == "127.0.0.1"  # uvicorn's line said who asked; this one does
    # uvicorn's other lines (started, stopped) come through the same JSON stream.
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)


def test_the_log_level_holds_for_uvicorns_lines_too(registry_process_factory: Any) -> None:
    """uvicorn sets its loggers to INFO before it imports the app; at ``LOG_LEVEL=WARNING``
    neither its lines nor PAS's below WARNING are written."""
    process = registry_process_factory(LOG_LEVEL="WARNING")
    httpx.post(f"{process.url}/register", json=agent_json()).raise_for_status()
    process.stop()

    lines = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    assert [line for line in lines if line["level"] in ("debug", "info")] == []
