"""Consul-style liveness: TTLs, critical agents, removal after a grace period, active checks."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
from litestar.testing import AsyncTestClient

from libs.common.schemas.agents import AgentDefinition, DiscoveryRequest, RegisteredAgent
from services.registry.catalog import Catalog
from services.registry.liveness import check_agents_forever, check_round
from services.registry.store import SQLiteAgentStore
from tests.conftest import agent_json

Client = AsyncTestClient[Any]


async def wait_for_status(client: Client, agent_id: str, status: str) -> dict[str, Any]:
    """Follow the catalog with blocking queries until the agent shows ``status``."""
    index = 0
    for _ in range(50):
        listing = (await client.get(f"/agents?index={index}&wait=5s")).json()
        index = listing["index"]
        for agent in listing["agents"]:
            if agent["agent_id"] == agent_id and agent["status"] == status:
                found: dict[str, Any] = agent
                return found
    raise AssertionError(f"{agent_id} never became {status}")


async def test_agent_without_heartbeats_turns_critical_and_is_hidden(registry: Client) -> None:
    await registry.post("/register?ttl=300ms", json=agent_json())

    agent = await wait_for_status(registry, "llm_llama31_8b", "critical")

    assert agent["status_reason"].startswith("TTL expired")
    assert agent["critical_since"] is not None
    healthy = await registry.post("/discover", json={"capabilities": ["reasoning"]})
    assert healthy.json()["agents"] == []
    everyone = await registry.post(
        "/discover", json={"capabilities": ["reasoning"], "healthy_only": False}
    )
    assert [a["agent_id"] for a in everyone.json()["agents"]] == ["llm_llama31_8b"]


async def test_heartbeat_brings_a_critical_agent_back(registry: Client) -> None:
    await registry.post("/register?ttl=300ms", json=agent_json())
    await wait_for_status(registry, "llm_llama31_8b", "critical")

    beat = await registry.post("/agents/llm_llama31_8b/heartbeat")

    assert beat.json()["status"] == "passing"
    assert beat.json()["critical_since"] is None
    found = await registry.post("/discover", json={"capabilities": ["reasoning"]})
    assert len(found.json()["agents"]) == 1


async def test_critical_agent_is_removed_after_the_grace_period(make_registry: Any) -> None:
    registry = await make_registry(deregister_critical_after_s=0.3)
    await registry.post("/register?ttl=200ms", json=agent_json())
    await wait_for_status(registry, "llm_llama31_8b", "critical")

    index = (await registry.get("/agents")).json()["index"]
    for _ in range(20):
        listing = (await registry.get(f"/agents?index={index}&wait=5s")).json()
        index = listing["index"]
        if not listing["agents"]:
            break
    assert listing["agents"] == []
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 404


async def test_ttl_zero_means_no_ttl_check(registry: Client) -> None:
    await registry.post("/register?ttl=0", json=agent_json())
    index = (await registry.get("/agents")).json()["index"]

    listing = (await registry.get(f"/agents?index={index}&wait=500ms")).json()

    assert listing["index"] == index
    assert listing["agents"][0]["status"] == "passing"


async def test_active_checks_follow_the_agents_health_endpoint(
    make_registry: Any, registry_process_factory: Any
) -> None:
    """A live service answering /health passes; a closed port turns critical with the reason."""
    live = registry_process_factory()
    registry = await make_registry(active_check_interval_s=0.1, active_check_timeout_s=1.0)
    await registry.post("/register?ttl=0", json=agent_json("alive", endpoint=live.url))
    await registry.post("/register?ttl=0", json=agent_json("dead", endpoint="http://127.0.0.1:9"))

    dead = await wait_for_status(registry, "dead", "critical")

    assert "GET http://127.0.0.1:9/health failed" in dead["status_reason"]
    alive = (await registry.get("/agents/alive")).json()
    assert alive["status"] == "passing"


async def test_an_endpoint_that_cannot_be_called_stops_no_other_check(tmp_path: Path) -> None:
    """An agent whose endpoint httpx cannot call (a port typo, from before the registry refused
    such) turns critical with the reason, and the other agents are still checked."""
    store = SQLiteAgentStore(f"{tmp_path}/registry.db")
    await store.open()
    catalog = Catalog(store, default_ttl_s=0, deregister_critical_after_s=300)
    await catalog.load()
    # Built without validation, as it was before the rule: the schema refuses it today.
    typo = AgentDefinition(**{**agent_json("typo"), "endpoint": "http://127.0.0.1:99999"})
    await catalog.register(typo)
    await catalog.register(
        msgspec.convert(agent_json("dead", endpoint="http://127.0.0.1:9"), AgentDefinition)
    )
    async with httpx.AsyncClient(timeout=1.0) as http:
        checks = asyncio.create_task(check_agents_forever(catalog, http, interval_s=0.05))
        for _ in range(50):
            if {a.status for a in catalog.all()} == {"critical"}:
                break
            await catalog.wait_for_change(catalog.index, timeout_s=1.0)
        checks.cancel()

    assert "GET http://127.0.0.1:9/health failed" in str(catalog.get("dead").status_reason)
    assert "GET http://127.0.0.1:99999/health failed" in str(catalog.get("typo").status_reason)
    await store.close()


async def test_a_stored_agent_that_no_longer_fits_is_left_out_at_start(
    make_registry: Any, tmp_path: Path
) -> None:
    store = SQLiteAgentStore(f"{tmp_path}/registry.db")
    await store.open()
    now = datetime.now(UTC)
    stored: dict[str, Any] = {
        "status": "passing",
        "ttl_s": 0.0,
        "registered_at": now,
        "last_heartbeat_at": now,
    }
    # Taken before 2026-12-06: an id ending in a newline, an endpoint with a port out of range.
    for agent in (
        agent_json("line\n"),
        agent_json("typo", endpoint="http://127.0.0.1:99999"),
        agent_json("fine"),
    ):
        await store.save(RegisteredAgent(**agent, **stored), 3)
    await store.close()

    registry = await make_registry()

    listing = (await registry.get("/agents")).json()
    assert [a["agent_id"] for a in listing["agents"]] == ["fine"]


class HeldStore(SQLiteAgentStore):
    """SQLite whose next save waits until the test lets it go (a slow disk, a distant
    PostgreSQL): the moment a heartbeat can land in."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.hold: asyncio.Event | None = None
        self.saving = asyncio.Event()

    async def save(self, agent: RegisteredAgent, index: int) -> None:
        hold, self.hold = self.hold, None
        if hold is not None:
            self.saving.set()
            await hold.wait()
        await super().save(agent, index)


async def test_a_heartbeat_while_the_reaper_saves_is_kept(tmp_path: Path) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    store = HeldStore(f"{tmp_path}/registry.db")
    await store.open()
    catalog = Catalog(store, default_ttl_s=10, deregister_critical_after_s=300, clock=lambda: now)
    await catalog.load()
    await catalog.register(msgspec.convert(agent_json(), AgentDefinition))
    now += timedelta(seconds=10.5)  # the heartbeat is half a second late...
    release = store.hold = asyncio.Event()
    reaping = asyncio.create_task(catalog.reap())
    await store.saving.wait()  # ...the reaper is saving the agent as critical...

    beat = await catalog.heartbeat("llm_llama31_8b")  # ...when the heartbeat lands
    release.set()
    await reaping

    agent = catalog.get("llm_llama31_8b")
    assert agent.status == "passing"
    assert agent.last_heartbeat_at == beat.last_heartbeat_at == now
    found = catalog.discover(DiscoveryRequest(capabilities=["reasoning"]))
    assert [a.agent_id for a in found] == ["llm_llama31_8b"]
    stored, _ = await store.load()
    assert [a.status for a in stored] == ["passing"]
    await store.close()


async def test_a_check_of_an_agent_that_registered_again_meanwhile_is_dropped(
    tmp_path: Path,
) -> None:
    """The agent's /health is called, and answers 503 only after the agent (restarted) has
    registered again: that answer was its old self's, and does not turn the new registration
    critical. The next check, of the new registration, counts."""
    asked = asyncio.Event()
    release = asyncio.Event()

    async def health(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        asked.set()
        await release.wait()
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(health, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = SQLiteAgentStore(f"{tmp_path}/registry.db")
    await store.open()
    catalog = Catalog(store, default_ttl_s=0, deregister_critical_after_s=300)
    await catalog.load()
    agent = msgspec.convert(
        agent_json("restarted", endpoint=f"http://127.0.0.1:{port}"), AgentDefinition
    )
    await catalog.register(agent)
    try:
        async with httpx.AsyncClient(timeout=30.0) as http:
            limit = asyncio.Semaphore(4)
            checking = asyncio.create_task(check_round(catalog, http, limit))
            await asyncio.wait_for(asked.wait(), 30)
            await catalog.register(agent)
            release.set()
            await checking
            after_stale_check = catalog.get("restarted").status
            await check_round(catalog, http, limit)  # the new registration's own check
            after_own_check = catalog.get("restarted")
    finally:
        server.close()
        await store.close()

    assert after_stale_check == "passing"
    assert after_own_check.status == "critical"
    assert "answered 503" in str(after_own_check.status_reason)
