"""The spec's router test (004, "Integration Tests"), run as written against port 6103.

The fixture starts the real chain on the spec's ports: a registry, the Llama 3.1 8B wrapper on
8050 (embedded model) registering itself, and the router on 6103 watching the registry.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.polling import poll
from tests.support.processes import ServiceProcess, free_port


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def spec_ports(registry_process_factory: Any, tmp_path: Path) -> Iterator[None]:
    taken = [port for port in (8050, 6103) if _port_taken(port)]
    if taken:
        pytest.skip(f"ports {taken} are in use (scripts/stop_all.sh frees PAS's own)")
    registry = registry_process_factory(port=free_port())
    env = {"REGISTRY_URL": registry.url}
    llm = ServiceProcess(
        "services.llm.llama31_8b_service:app", 8050, env, tmp_path / "llm.log"
    ).start()
    router = ServiceProcess(
        "services.provider_router.provider_router:app",
        6103,
        {**env, "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db"},
        tmp_path / "router.log",
    ).start()
    poll(
        lambda: httpx.get("http://localhost:6103/providers").json()["candidates"],
        until=lambda rows: any(row["agent_id"] == "llm_llama31_8b" for row in rows),
        timeout_s=20,
        interval_s=0.1,
    )
    yield
    router.stop()
    llm.stop()


# fmt: off
@pytest.mark.usefixtures("spec_ports")
@pytest.mark.asyncio
async def test_provider_router_local_preference() -> None:
    """Test that provider router prefers local LLMs for zero cost"""
    async with httpx.AsyncClient() as client:
        response = await client.post(
            "http://localhost:6103/route",
            json={
                "capability": "reasoning",
                "prefer_local": True
            }
        )
        assert response.status_code == 200
        route = response.json()
        assert route["provider"] == "local"
        assert route["endpoint"] == "http://localhost:8050"
# fmt: on
