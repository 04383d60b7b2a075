"""The registry on PostgreSQL: same behaviour, shared by many registry processes.

Runs when PAS_TEST_POSTGRES_DSN names a database the tests may write to (CI starts one);
skipped otherwise.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest

from tests.conftest import agent_json

DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="set PAS_TEST_POSTGRES_DSN to test the PostgreSQL store"),
]


@pytest.fixture
async def empty_database() -> None:
    import psycopg  # noqa: PLC0415

    async with await psycopg.AsyncConnection.connect(DSN, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS pas_registry_agents, pas_registry_index")


@pytest.mark.usefixtures("empty_database")
async def test_catalog_on_postgres_survives_a_restart(make_registry: Any) -> None:
    first = await make_registry(database_url=DSN)
    await first.post("/register?ttl=0", json=agent_json("pg_agent", capabilities=["reasoning"]))
    await first.post("/register?ttl=0", json=agent_json("pg_gone"))
    await first.delete("/agents/pg_gone")
    before = (await first.get("/agents")).json()

    second = await make_registry(database_url=DSN)
    after = (await second.get("/agents")).json()
    found = await second.post("/discover", json={"capabilities": ["reasoning"]})

    assert [a["agent_id"] for a in after["agents"]] == ["pg_agent"]
    assert after["index"] == before["index"]
    assert [a["agent_id"] for a in found.json()["agents"]] == ["pg_agent"]
    assert after["agents"][0]["metadata"] == before["agents"][0]["metadata"]


@pytest.mark.usefixtures("empty_database")
async def test_a_standby_takes_over_from_a_killed_registry(
    registry_process_factory: Any,
) -> None:
    """The registry's scaling model (deploy/README.md): one writer at a time on PostgreSQL; when
    it dies (SIGKILL, no shutdown), another process on the same database answers with the same
    catalog and index, and a watcher that resumes at its last index waits for what is new."""
    first = registry_process_factory(REGISTRY_DATABASE_URL=DSN)
    async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
        for name in ("desk_a", "desk_b"):
            registered = await http.post("/register?ttl=0", json=agent_json(name))
            assert registered.status_code in (200, 201), registered.text
        seen = (await http.get("/agents")).json()
    first.kill()

    standby = registry_process_factory(REGISTRY_DATABASE_URL=DSN)
    async with httpx.AsyncClient(base_url=standby.url, timeout=30) as http:
        taken_over = (await http.get("/agents")).json()
        watch = asyncio.create_task(http.get(f"/agents?index={seen['index']}&wait=20s"))
        await asyncio.sleep(0.5)
        assert not watch.done(), "a watch at the last index seen must wait for a change"
        await http.post("/register?ttl=0", json=agent_json("desk_c"))
        woken = (await watch).json()

    assert taken_over["index"] == seen["index"]
    # Everything but the heartbeat clock, which a new process starts afresh (it cannot know
    # what it missed, so each agent gets a whole TTL to report in).
    changed = {
        key
        for before, after in zip(seen["agents"], taken_over["agents"], strict=True)
        for key in before
        if before[key] != after.get(key)
    }
    assert changed <= {"last_heartbeat_at"}
    assert [a["agent_id"] for a in woken["agents"]] == ["desk_a", "desk_b", "desk_c"]
    assert woken["index"] > seen["index"]


@pytest.mark.usefixtures("empty_database")
async def test_a_nul_character_is_a_400_on_postgres(make_registry: Any) -> None:
    registry = await make_registry(database_url=DSN)

    for change in ({"name": "pg\u0000"}, {"metadata": {"note": "a\u0000b"}}):
        refused = await registry.post("/register", json=agent_json("pg_nul", **change))
        assert refused.status_code == 400, refused.text

    accepted = await registry.post("/register", json=agent_json("pg_nul"))
    assert accepted.status_code == 200
    assert [a["agent_id"] for a in (await registry.get("/agents")).json()["agents"]] == ["pg_nul"]
