"""The spec's integration test (004, "Integration Tests"): an LLM service registers itself and
the spec's discovery query finds it, at an endpoint where it answers.

The spec runs it against a registry on 6121 and the Llama 3.1 8B wrapper on 8050. Here both are
real processes on free ports of the test's own (the registry a developer may run on 6121 is
never touched): the wrapper, on the embedded model, registers through its own
``AgentRegistration`` as it does in production, and the test only asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.llm.conftest import LLAMA_APP
from tests.support.processes import ServiceProcess, free_port
from tests.support.registry_watch import agent_ids, watch_agents


def test_registry_integration(registry_process_factory: Any, tmp_path: Path) -> None:
    """Test that LLM services register with registry"""
    registry = registry_process_factory()
    llm_port = free_port()
    llm = ServiceProcess(
        LLAMA_APP,
        llm_port,
        {"REGISTRY_URL": registry.url, "LLAMA31_8B_PORT": str(llm_port)},
        tmp_path / "llm.log",
    ).start()
    try:
        watch_agents(registry.url, lambda agents: "llm_llama31_8b" in agent_ids(agents))

        # Query registry for LLM agents (the spec's query)
        response = httpx.post(f"{registry.url}/discover", json={"capabilities": ["reasoning"]})
        assert response.status_code == 200
        agents = response.json()["agents"]

        # Should find llama31_8b agent, at the address where the service listens
        llm_agents = [a for a in agents if a["agent_id"] == "llm_llama31_8b"]
        assert len(llm_agents) == 1
        endpoint = llm_agents[0]["endpoint"]
        assert endpoint == f"http://localhost:{llm_port}"

        # What discovery found is the service itself: it answers there.
        answer = httpx.post(
            f"{endpoint}/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What is a bond?"}],
                "max_tokens": 8,
                "temperature": 0,
            },
            timeout=60,
        )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"]

        # A capability the service does not offer does not find it.
        other = httpx.post(f"{registry.url}/discover", json={"capabilities": ["classification"]})
        assert "llm_llama31_8b" not in {a["agent_id"] for a in other.json()["agents"]}
    finally:
        llm.stop()
