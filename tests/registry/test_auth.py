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


async def test_a_refused_write_is_an_answer_like_any_other(make_registry: Any) -> None:
    """The refusal goes out through the kit's request id and metrics, as a 401 (an error the
    token check raised past them went out as their 500)."""
    registry = await make_registry(token=TOKEN)

    refused = await registry.post(
        "/agents/llm_llama31_8b/heartbeat", headers={"X-Request-ID": "refused-1"}
    )

    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == "refused-1"
    assert refused.json()["request_id"] == "refused-1"
    counted = {
        line.partition('status_code="')[2][:3]
        for line in (await registry.get("/metrics")).text.splitlines()
        if line.startswith("pas_requests_total{") and 'path="/agents/{agent_id}/heartbeat"' in line
    }
    assert "401" in counted  # counters are per process: other tests' heartbeats show too
    assert "500" not in counted


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
