"""Show the running PAS: register a demo agent, discover it, and watch the catalog change.

Run by ``scripts/quickstart.sh``; on its own: ``.venv/bin/python -m scripts.demo``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from libs.common.clients.registry import AgentRegistration, RegistryClient
from libs.common.constants import DEFAULT_REGISTRY_URL
from libs.common.kit.logging import configure_logging
from libs.common.schemas.agents import AgentDefinition
from libs.common.settings import BaseSettings, load_settings_or_exit


class DemoSettings(BaseSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = ""

    registry_url: str = DEFAULT_REGISTRY_URL
    registry_token: str | None = None


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


def main() -> None:
    configure_logging("WARNING", "console")
    asyncio.run(run_demo(load_settings_or_exit(DemoSettings)))


if __name__ == "__main__":
    main()
