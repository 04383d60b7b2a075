"""Register, discover, update and remove agents over the registry's HTTP API."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.conftest import agent_json

Client = AsyncTestClient[Any]


async def register(client: Client, **overrides: Any) -> dict[str, Any]:
    response = await client.post("/register", json=agent_json(**overrides))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def discover_ids(client: Client, **query: Any) -> list[str]:
    response = await client.post("/discover", json=query)
    assert response.status_code == 200, response.text
    return [agent["agent_id"] for agent in response.json()["agents"]]


async def test_registered_agent_is_discovered_by_capability(registry: Client) -> None:
    agent = await register(registry)

    assert agent["status"] == "passing"
    assert agent["endpoint"] == "http://localhost:8050"
    assert await discover_ids(registry, capabilities=["reasoning"]) == ["llm_llama31_8b"]
    assert await discover_ids(registry, capabilities=["classification"]) == []


async def test_match_all_needs_every_capability_and_any_needs_one(registry: Client) -> None:
    await register(registry, agent_id="llama", capabilities=["reasoning", "planning"])
    await register(registry, agent_id="tiny", capabilities=["classification", "tagging"])
    await register(registry, agent_id="both", capabilities=["reasoning", "classification"])

    assert await discover_ids(
        registry, capabilities=["reasoning", "classification"], match="all"
    ) == ["both"]
    assert await discover_ids(registry, capabilities=["planning", "tagging"], match="any") == [
        "llama",
        "tiny",
    ]
    assert await discover_ids(registry, capabilities=[]) == ["both", "llama", "tiny"]


async def test_discovery_filters_by_role_and_tier(registry: Client) -> None:
    await register(registry, agent_id="worker", role="execution", tier=2)
    await register(registry, agent_id="boss", role="coordinator", tier=1)

    assert await discover_ids(registry, capabilities=["reasoning"], role="coordinator") == ["boss"]
    assert await discover_ids(registry, capabilities=["reasoning"], tier=2) == ["worker"]
    assert await discover_ids(registry, capabilities=["reasoning"], role="execution", tier=1) == []


async def test_register_again_updates_in_place(registry: Client) -> None:
    first = await register(registry, capabilities=["reasoning"])
    second = await register(
        registry, capabilities=["classification"], endpoint="http://localhost:9050"
    )

    assert second["registered_at"] == first["registered_at"]
    assert second["modify_index"] > first["modify_index"]
    assert await discover_ids(registry, capabilities=["reasoning"]) == []
    assert await discover_ids(registry, capabilities=["classification"]) == ["llm_llama31_8b"]
    listing = (await registry.get("/agents")).json()
    assert [a["endpoint"] for a in listing["agents"]] == ["http://localhost:9050"]


async def test_get_and_delete_an_agent(registry: Client) -> None:
    await register(registry)

    fetched = await registry.get("/agents/llm_llama31_8b")
    assert fetched.status_code == 200
    assert fetched.json()["metadata"]["model"] == "llama3.1:8b"

    deleted = await registry.delete("/agents/llm_llama31_8b")
    assert deleted.status_code == 204
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 404
    again = await registry.delete("/agents/llm_llama31_8b")
    assert again.status_code == 404
    assert "llm_llama31_8b" in again.json()["detail"]
    assert await discover_ids(registry, capabilities=["reasoning"]) == []


async def test_heartbeat_answers_with_the_agent_and_unknown_agents_are_404(
    registry: Client,
) -> None:
    registered = await register(registry)

    beat = await registry.post("/agents/llm_llama31_8b/heartbeat")
    assert beat.status_code == 200
    assert beat.json()["last_heartbeat_at"] >= registered["last_heartbeat_at"]
    missing = await registry.post("/agents/nobody/heartbeat")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_every_change_advances_the_catalog_index(registry: Client) -> None:
    start = (await registry.get("/agents")).json()["index"]
    created = await register(registry)
    await registry.delete("/agents/llm_llama31_8b")
    after = await registry.get("/agents")

    assert created["modify_index"] == start + 1
    assert after.json()["index"] == start + 2
    assert after.headers["x-pas-index"] == str(start + 2)
