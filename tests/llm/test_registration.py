"""LLM services join the swarm: they register with a real registry, stay registered through
registry outages, and deregister when they stop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.llm.conftest import LLAMA_APP
from tests.support.processes import ServiceProcess, free_port
from tests.support.registry_watch import agent_ids, watch_agents


def test_service_registers_serves_through_an_outage_and_deregisters(
    registry_process_factory: Any, tmp_path: Path
) -> None:
    registry_port = free_port()
    registry_url = f"http://127.0.0.1:{registry_port}"
    llm_port = free_port()
    # Run as `uvicorn <app> --port N` with no LLAMA31_8B_PORT: N is what it reports and registers.
    llm = ServiceProcess(
        LLAMA_APP,
        llm_port,
        {
            "REGISTRY_URL": registry_url,
            "LLAMA31_8B_PORT": "",
            "LLAMA31_8B_REGISTRATION_TTL_S": "3",
        },
        tmp_path / "llm.log",
    ).start()
    try:
        assert httpx.get(f"{llm.url}/health").json()["port"] == llm_port
        # The registry is not up yet: the service answers anyway.
        answer = httpx.post(
            f"{llm.url}/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
            timeout=60,
        )
        assert answer.status_code == 200

        registry_process_factory(port=registry_port)
        [agent] = watch_agents(registry_url, lambda agents: agent_ids(agents) == {"llm_llama31_8b"})

        assert agent["endpoint"] == f"http://localhost:{llm_port}"
        assert agent["capabilities"] == ["reasoning", "planning", "code_review", "explanation"]
        assert agent["metadata"]["model"] == "smollm2-135m-instruct"
        assert agent["metadata"]["provider"] == "embedded"
        assert agent["status"] == "passing"
        found = httpx.post(f"{registry_url}/discover", json={"capabilities": ["reasoning"]})
        assert [a["agent_id"] for a in found.json()["agents"]] == ["llm_llama31_8b"]
    finally:
        llm.stop()

    watch_agents(registry_url, lambda agents: not agents)
