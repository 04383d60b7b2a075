"""The registry client keeps a service registered through registry outages and restarts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from libs.common.clients.registry import AgentRegistration, RegistryClient
from libs.common.errors import AgentNotFound, RegistryError, RegistryUnavailable
from libs.common.schemas.agents import AgentDefinition
from tests.support.processes import free_port

DEFINITION = AgentDefinition(
    agent_id="llm_tinyllama_1b",
    name="TinyLlama 1.1B Service",
    tier=2,
    role="execution",
    capabilities=["classification", "tagging", "extraction", "filtering"],
    endpoint="http://localhost:8051",
)


async def test_register_discover_heartbeat_deregister(registry_process_factory: Any) -> None:
    process = registry_process_factory()
    async with RegistryClient(process.url) as client:
        registered = await client.register(DEFINITION, ttl_s=10)
        found = await client.discover(["classification", "tagging"])
        beat = await client.heartbeat(DEFINITION.agent_id)
        await client.deregister(DEFINITION.agent_id)

        assert registered.ttl_s == 10
        assert [a.agent_id for a in found] == ["llm_tinyllama_1b"]
        assert beat.last_heartbeat_at >= registered.last_heartbeat_at
        with pytest.raises(AgentNotFound):
            await client.get_agent(DEFINITION.agent_id)


async def test_watch_returns_after_a_change(registry_process_factory: Any) -> None:
    process = registry_process_factory()
    async with RegistryClient(process.url) as client:
        start = await client.list_agents()
        watch = asyncio.create_task(client.list_agents(index=start.index, wait_s=30))
        await asyncio.sleep(0.2)
        await client.register(DEFINITION)
        changed = await asyncio.wait_for(watch, 10)

    assert changed.index > start.index
    assert [a.agent_id for a in changed.agents] == ["llm_tinyllama_1b"]


async def test_errors_say_what_happened(registry_process_factory: Any) -> None:
    process = registry_process_factory(REGISTRY_TOKEN="right")
    async with RegistryClient(process.url, token="wrong") as client:
        with pytest.raises(RegistryError) as refused:
            await client.register(DEFINITION)
    async with RegistryClient(f"http://127.0.0.1:{free_port()}") as nowhere:
        with pytest.raises(RegistryUnavailable, match="ConnectError"):
            await nowhere.discover(["reasoning"])

    assert refused.value.status_code == 401


async def test_registration_waits_out_a_registry_outage(registry_process_factory: Any) -> None:
    """The service starts first; the registry comes up later; the agent gets registered."""
    port = free_port()
    async with RegistryClient(f"http://127.0.0.1:{port}", timeout_s=1) as client:
        registration = AgentRegistration(client, DEFINITION, ttl_s=3, retry_wait_max_s=0.3)
        registration.start()
        await asyncio.sleep(0.5)
        assert not registration.registered.is_set()

        registry_process_factory(port=port)
        await asyncio.wait_for(registration.registered.wait(), 15)
        assert [a.agent_id for a in await client.discover(["tagging"])] == ["llm_tinyllama_1b"]

        await registration.stop()
        assert await client.discover(["tagging"]) == []


async def test_registration_comes_back_after_the_registry_forgets_it(
    registry_process_factory: Any,
) -> None:
    process = registry_process_factory()
    async with RegistryClient(process.url) as client:
        registration = AgentRegistration(client, DEFINITION, ttl_s=0.6, retry_wait_max_s=0.2)
        registration.start()
        await asyncio.wait_for(registration.registered.wait(), 10)

        await client.deregister(DEFINITION.agent_id)
        listing = await client.list_agents()
        while not listing.agents:
            listing = await client.list_agents(index=listing.index, wait_s=5)

        assert [a.agent_id for a in listing.agents] == ["llm_tinyllama_1b"]
        assert listing.agents[0].status == "passing"
        await registration.stop()


async def test_heartbeats_keep_a_short_ttl_agent_passing(registry_process_factory: Any) -> None:
    process = registry_process_factory()
    async with RegistryClient(process.url) as client:
        registration = AgentRegistration(client, DEFINITION, ttl_s=0.6)
        registration.start()
        await asyncio.wait_for(registration.registered.wait(), 10)
        start = await client.list_agents()

        # Three TTLs pass; without heartbeats the agent would turn critical in the first.
        changed = await client.list_agents(index=start.index, wait_s=1.8)
        agent = await client.get_agent(DEFINITION.agent_id)
        await registration.stop()

    assert changed.index == start.index
    assert agent.status == "passing"
