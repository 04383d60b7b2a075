"""``pas status`` against a real registry and a real service: what answers is up, what does
not is down, and then the command exits 1."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from tests.cli.conftest import nowhere, pas
from tests.conftest import agent_json
from tests.support.processes import ServiceProcess


def test_status_shows_what_answers_and_what_does_not(
    kafka_bootstrap: str,
    registry_process_factory: Callable[..., ServiceProcess],
    start_analytics: Callable[[], ServiceProcess],
) -> None:
    registry = registry_process_factory()
    analytics = start_analytics()
    runner_url = nowhere()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REGISTRY_URL": registry.url,
        "ANALYTICS_URL": analytics.url,
        "RUNNER_URL": runner_url,
    }
    # The analytics service as an agent of the registry (under "localhost", as services
    # register themselves): its row says what the registry says of it.
    port = analytics.url.rsplit(":", 1)[1]
    agent = agent_json("analytics_agent", endpoint=f"http://localhost:{port}")
    assert httpx.post(f"{registry.url}/register", json=agent).status_code in (200, 201)

    up = pas("status", "--service", "registry", "--service", "analytics", env=env)

    assert up.returncode == 0, up.stdout + up.stderr
    rows = {line.split("│")[1].strip(): line for line in up.stdout.splitlines() if "│" in line}
    assert " up " in rows["registry"]
    assert " up " in rows["analytics"]
    assert "agent analytics_agent: passing" in rows["analytics"]
    assert " up " in rows["kafka"]
    # Details as a person reads them: no Python reprs of dicts, lists or booleans.
    assert "agents=(passing 1, critical 0)" in rows["registry"]
    assert "store_open=yes" in rows["analytics"]
    for row in (rows["registry"], rows["analytics"]):
        assert not set("{}[]'") & set(row), row

    # One down (the runner, not running) and an agent the registry holds at a dead endpoint.
    gone = agent_json("gone_agent", endpoint=nowhere())
    assert httpx.post(f"{registry.url}/register", json=gone).status_code in (200, 201)
    asked = ("--service", "registry", "--service", "analytics", "--service", "langgraph_runner")

    down = pas("status", *asked, "--json", env=env)

    assert down.returncode == 1, down.stdout + down.stderr
    report = json.loads(down.stdout)
    status = {row["service"]: row for row in report["services"]}
    assert report["healthy"] is False
    assert status["registry"]["status"] == "up"
    assert status["analytics"]["status"] == "up"
    assert status["langgraph_runner"] == {
        "service": "langgraph_runner",
        "url": runner_url,
        "status": "down",
        "details": status["langgraph_runner"]["details"],
    }
    assert status["agent gone_agent"]["status"] == "down"
    assert status["kafka"]["status"] == "up"
    assert set(status) == {"registry", "analytics", "langgraph_runner", "agent gone_agent", "kafka"}


def test_an_unknown_service_is_a_usage_error() -> None:
    shown = pas("status", "--service", "nope", env={})

    assert shown.returncode == 2
    assert "nope: not a PAS service" in shown.stderr
