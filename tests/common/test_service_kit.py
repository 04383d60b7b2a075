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
    process.stop()

    lines = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    events = {(line.get("event"), line.get("request_id")) for line in lines}
    assert ("agent registered", "trace-me") in events
    assert ("request", "trace-me") in events
    assert all("timestamp" in line and "level" in line for line in lines)
    assert any(line.get("logger", "").startswith("uvicorn") for line in lines)
