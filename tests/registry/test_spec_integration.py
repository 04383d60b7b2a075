"""The spec's integration test (004, "Integration Tests"), run as written against port 6121.

The fixture makes sure a registry answers on 6121 with the spec's Llama 3.1 8B agent in it: it
starts one when the port is free, or uses the PAS registry already running there (after
``scripts/start_all.sh``), and removes the agent it added afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import agent_json

SPEC_REGISTRY = "http://localhost:6121"


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def registry_on_6121(registry_process_factory: Any) -> Iterator[None]:
    if not _port_taken(6121):
        registry_process_factory(port=6121)
    elif httpx.get(f"{SPEC_REGISTRY}/health").json().get("service") != "registry":
        pytest.fail("port 6121 is taken by something that is not the PAS registry")
    response = httpx.post(f"{SPEC_REGISTRY}/register?ttl=0", json=agent_json())
    if response.status_code == 401:
        pytest.skip("the registry on 6121 needs REGISTRY_TOKEN; stop it or run without a token")
    response.raise_for_status()
    yield
    httpx.delete(f"{SPEC_REGISTRY}/agents/llm_llama31_8b")


# fmt: off
@pytest.mark.usefixtures("registry_on_6121")
@pytest.mark.asyncio
async def test_registry_integration() -> None:
    """Test that LLM services register with registry"""
    async with httpx.AsyncClient() as client:
        # Query registry for LLM agents
        response = await client.post(
            "http://localhost:6121/discover",
            json={"capabilities": ["reasoning"]}
        )
        assert response.status_code == 200
        agents = response.json()["agents"]

        # Should find llama31_8b agent
        llm_agents = [a for a in agents if a["agent_id"] == "llm_llama31_8b"]
        assert len(llm_agents) == 1
        assert llm_agents[0]["endpoint"] == "http://localhost:8050"
# fmt: on
