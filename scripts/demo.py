"""Show the running PAS: register, discover and watch agents; ask the LLM services found.

Run by ``scripts/quickstart.sh``; on its own: ``.venv/bin/python -m scripts.demo``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import httpx

from libs.common.clients.registry import AgentRegistration, RegistryClient
from libs.common.constants import DEFAULT_REGISTRY_URL, PROVIDER_ROUTER_PORT
from libs.common.kit.logging import configure_logging
from libs.common.schemas.agents import AgentDefinition, RegisteredAgent
from libs.common.settings import BaseSettings, load_settings_or_exit


class DemoSettings(BaseSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = ""

    registry_url: str = DEFAULT_REGISTRY_URL
    registry_token: str | None = None
    router_url: str = f"http://localhost:{PROVIDER_ROUTER_PORT}"
    # Guarded services (docs/security.md): each is asked with its own token, else the shared one.
    pas_token: str | None = None
    llm_token: str | None = None
    router_token: str | None = None


def _bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


DEMO_AGENT = AgentDefinition(
    agent_id="demo_market_analyst",
    name="Demo market analyst",
    tier=2,
    role="execution",
    capabilities=["market_analysis", "reasoning"],
    endpoint="http://localhost:6199",
    metadata={"purpose": "quickstart demo; deregisters when the demo ends"},
)


async def run_demo(settings: DemoSettings) -> None:
    async with RegistryClient(settings.registry_url, token=settings.registry_token) as client:
        registration = AgentRegistration(client, DEMO_AGENT, ttl_s=15)
        registration.start()
        await asyncio.wait_for(registration.registered.wait(), 30)
        print(f"registered {DEMO_AGENT.agent_id} with the registry at {settings.registry_url}")

        found = await client.discover(["market_analysis"])
        print("discover(['market_analysis']) ->")
        for agent in found:
            print(
                f"  {agent.agent_id:<24} {agent.status:<8} {agent.endpoint:<24} "
                f"capabilities={','.join(agent.capabilities)}"
            )

        before = await client.list_agents()
        watch = asyncio.create_task(client.list_agents(index=before.index, wait_s=30))
        await registration.stop()
        after = await asyncio.wait_for(watch, 30)
        print(
            f"a watcher at index {before.index} woke at index {after.index}: "
            f"{len(before.agents)} -> {len(after.agents)} agents after deregistration"
        )

        reasoning = await _wait_for_capability(client, "reasoning")
        classifier = await _wait_for_capability(client, "domain_classification")
    llm_headers = _bearer(settings.llm_token or settings.pas_token)
    router_headers = _bearer(settings.router_token or settings.pas_token)
    async with httpx.AsyncClient(timeout=120) as http:
        question = "In one sentence, what does a bond's yield tell an investor?"
        answer = (
            await http.post(
                f"{reasoning.endpoint}/chat/completions",
                json={"messages": [{"role": "user", "content": question}], "temperature": 0},
                headers=llm_headers,
            )
        ).json()
        print(f"\n{reasoning.agent_id} ({answer['model']}) at {reasoning.endpoint} answers:")
        print(f"  Q: {question}\n  A: {answer['choices'][0]['message']['content'].strip()}")
        print(f"  usage: {answer['usage']}")
        query = "What drives inflation and interest rates?"
        domains = (
            await http.post(
                f"{classifier.endpoint}/classify_domain",
                json={"query": query, "top_k": 3},
                headers=llm_headers,
            )
        ).json()
        ranked = ", ".join(f"{d['domain']} {d['confidence']:.2f}" for d in domains["domains"])
        print(f"\n{classifier.agent_id} classifies {query!r}: {ranked}")

        task = {
            "capability": "classification",
            "messages": [{"role": "user", "content": "Is 'URGENT: claim your prize' spam?"}],
            "max_tokens": 24,
            "temperature": 0,
        }
        routed = await http.post(
            f"{settings.router_url}/v1/chat/completions", json=task, headers=router_headers
        )
        print(
            f"\nthe router sent a 'classification' task to {routed.headers['x-pas-candidate']} "
            f"({routed.headers['x-pas-fallbacks']} fallbacks): "
            f"{routed.json()['choices'][0]['message']['content'].strip()}"
        )


async def _wait_for_capability(client: RegistryClient, capability: str) -> RegisteredAgent:
    """The first healthy agent with ``capability``, waiting (by watch) for one to register."""
    listing = await client.list_agents()
    for _ in range(10):
        found = await client.discover([capability])
        if found:
            return found[0]
        listing = await client.list_agents(index=listing.index, wait_s=5)
    raise SystemExit(f"no agent with capability {capability!r} registered; see .pas/logs/")


def main() -> None:
    configure_logging("WARNING", "console")
    asyncio.run(run_demo(load_settings_or_exit(DemoSettings)))


if __name__ == "__main__":
    main()
