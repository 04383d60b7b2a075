"""Blocking queries: GET /agents?index=N&wait=... returns as soon as the catalog changes.

These run against a real uvicorn process: a watch is a long-held HTTP request next to others.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import agent_json


@pytest.fixture
async def http(registry_process_factory: Any) -> AsyncIterator[httpx.AsyncClient]:
    process = registry_process_factory()
    async with httpx.AsyncClient(base_url=process.url, timeout=60) as client:
        yield client


async def test_watch_wakes_when_an_agent_registers(http: httpx.AsyncClient) -> None:
    index = (await http.get("/agents")).json()["index"]
    watch = asyncio.create_task(http.get(f"/agents?index={index}&wait=30s"))
    await asyncio.sleep(0.3)
    assert not watch.done(), "the watch must block while nothing changes"

    await http.post("/register", json=agent_json())
    response = await asyncio.wait_for(watch, 10)

    assert response.status_code == 200
    assert response.json()["index"] > index
    assert [a["agent_id"] for a in response.json()["agents"]] == ["llm_llama31_8b"]


async def test_many_watchers_wake_on_deregistration(http: httpx.AsyncClient) -> None:
    await http.post("/register", json=agent_json())
    index = (await http.get("/agents")).json()["index"]
    watches = [asyncio.create_task(http.get(f"/agents?index={index}&wait=30s")) for _ in range(5)]
    await asyncio.sleep(0.3)

    await http.delete("/agents/llm_llama31_8b")
    responses = await asyncio.wait_for(asyncio.gather(*watches), 10)

    assert all(r.json()["agents"] == [] for r in responses)


async def test_watch_returns_the_same_index_when_nothing_changes(http: httpx.AsyncClient) -> None:
    await http.post("/register", json=agent_json())
    index = (await http.get("/agents")).json()["index"]

    response = await http.get(f"/agents?index={index}&wait=200ms")

    assert response.json()["index"] == index
    assert response.headers["x-pas-index"] == str(index)


async def test_a_stale_index_returns_at_once(http: httpx.AsyncClient) -> None:
    await http.post("/register", json=agent_json())

    response = await asyncio.wait_for(http.get("/agents?index=0&wait=5m"), 10)

    assert response.json()["index"] >= 1


async def test_a_stopping_registry_answers_its_watches_instead_of_waiting_them_out(
    registry_process_factory: Any,
) -> None:
    process = registry_process_factory()
    async with httpx.AsyncClient(base_url=process.url, timeout=120) as client:
        index = int((await client.get("/agents")).headers["x-pas-index"])
        watch = asyncio.create_task(client.get(f"/agents?index={index}&wait=90s"))
        await asyncio.sleep(0.5)  # the watch is held by the server now
        assert not watch.done()

        # SIGTERM; a registry still holding the watch would be killed after 10 s.
        code = await asyncio.to_thread(process.stop, timeout_s=10)
        response = await watch

    assert code != -signal.SIGKILL, "the registry had to be killed"
    assert response.status_code == 200
    assert int(response.headers["x-pas-index"]) == index
