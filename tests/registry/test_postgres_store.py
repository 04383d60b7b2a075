"""The registry on PostgreSQL: same behaviour, shared by many registry processes.

Runs when PAS_TEST_POSTGRES_DSN names a database the tests may write to (CI starts one);
skipped otherwise.
"""

from __future__ import annotations

import os
from typing import Any

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
