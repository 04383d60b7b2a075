"""With REGISTRY_TOKEN set, writes need the bearer token; reads stay open; tokens never logged."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import agent_json

TOKEN = "s3cret-registry-token-for-tests"


async def test_writes_need_the_token_and_reads_do_not(make_registry: Any) -> None:
    registry = await make_registry(token=TOKEN)
    good = {"Authorization": f"Bearer {TOKEN}"}

    refused = await registry.post("/register", json=agent_json())
    wrong = await registry.post(
        "/register", json=agent_json(), headers={"Authorization": "Bearer nope"}
    )
    accepted = await registry.post("/register", json=agent_json(), headers=good)

    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "Bearer" in refused.json()["detail"]
    assert wrong.status_code == 401
    assert accepted.status_code == 200
    assert (await registry.post("/agents/llm_llama31_8b/heartbeat")).status_code == 401
    assert (await registry.delete("/agents/llm_llama31_8b")).status_code == 401
    assert (await registry.get("/agents/llm_llama31_8b")).status_code == 200
    assert (
        await registry.post("/discover", json={"capabilities": ["reasoning"]})
    ).status_code == 200
    assert (
        await registry.post("/agents/llm_llama31_8b/heartbeat", headers=good)
    ).status_code == 200
    assert (await registry.delete("/agents/llm_llama31_8b", headers=good)).status_code == 204


def test_the_token_never_reaches_the_logs(registry_process_factory: Any) -> None:
    process = registry_process_factory(REGISTRY_TOKEN=TOKEN, LOG_LEVEL="DEBUG")
    assert httpx.post(f"{process.url}/register", json=agent_json()).status_code == 401
    httpx.post(
        f"{process.url}/register",
        json=agent_json(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).raise_for_status()
    process.stop()

    logs = process.logs()
    assert "registry started" in logs
    assert TOKEN not in logs
