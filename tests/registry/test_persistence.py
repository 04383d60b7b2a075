"""The catalog survives a restart of the registry process, agents and their state alike."""

from __future__ import annotations

import signal
import sqlite3
from typing import Any

import httpx

from services.registry.settings import RegistrySettings
from tests.conftest import agent_json


def test_agents_and_state_survive_a_restart(registry_process_factory: Any) -> None:
    first = registry_process_factory()
    httpx.post(f"{first.url}/register?ttl=0", json=agent_json("steady")).raise_for_status()
    httpx.post(f"{first.url}/register?ttl=200ms", json=agent_json("silent")).raise_for_status()
    index = httpx.get(f"{first.url}/agents").json()["index"]
    silent: dict[str, Any] = {}
    while silent.get("status") != "critical":
        listing = httpx.get(f"{first.url}/agents?index={index}&wait=5s", timeout=10).json()
        index = listing["index"]
        silent = next(a for a in listing["agents"] if a["agent_id"] == "silent")
    before = httpx.get(f"{first.url}/agents").json()
    # uvicorn drains, runs the shutdown, then re-raises SIGTERM so its exit status tells why.
    assert first.stop() in (0, -signal.SIGTERM)
    assert "registry stopped" in first.logs(), "SIGTERM must run the graceful shutdown"

    second = registry_process_factory(port=first.port)
    after = httpx.get(f"{second.url}/agents").json()

    assert after["index"] == before["index"]
    by_id = {a["agent_id"]: a for a in after["agents"]}
    assert by_id["steady"]["status"] == "passing"
    assert by_id["silent"]["status"] == "critical"
    assert by_id["silent"]["critical_since"] == silent["critical_since"]
    assert by_id["steady"]["registered_at"] == before["agents"][1]["registered_at"]


async def test_a_registration_whose_write_failed_is_not_stored_by_the_next_one(
    registry: Any, registry_settings: RegistrySettings
) -> None:
    """A write that fails half-way (here a trigger refuses the catalog index after the agent's
    row is written) is rolled back: the registration is refused, and the next registration's
    commit does not make the refused agent durable behind the registry's back."""
    database = sqlite3.connect(registry_settings.database_url.removeprefix("sqlite:///"))
    database.execute(
        "CREATE TRIGGER refuse_poison BEFORE UPDATE ON catalog_index "
        "WHEN EXISTS (SELECT 1 FROM agents WHERE agent_id = 'poison') "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    database.commit()
    assert (await registry.post("/register", json=agent_json("first"))).status_code == 200

    refused = await registry.post("/register", json=agent_json("poison"))
    assert refused.status_code == 500
    database.execute("DROP TRIGGER refuse_poison")  # "database is locked" before
    database.commit()
    assert (await registry.post("/register", json=agent_json("second"))).status_code == 200

    listed = {a["agent_id"] for a in (await registry.get("/agents")).json()["agents"]}
    stored = {row[0] for row in database.execute("SELECT agent_id FROM agents")}
    database.close()
    assert listed == stored == {"first", "second"}
