"""Following a running registry's catalog with its blocking queries (``GET /agents?index=N``),
as PAS's services do, until the agents listed are the ones a test waits for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

Agents = list[dict[str, Any]]


def watch_agents(
    registry_url: str, until: Callable[[Agents], bool], timeout_s: float = 30
) -> Agents:
    """The catalog's agents once ``until`` holds for them; fails with the last listing seen."""
    deadline = time.monotonic() + timeout_s
    index = 0
    agents: Agents = []
    while time.monotonic() < deadline:
        listing = httpx.get(f"{registry_url}/agents?index={index}&wait=5s", timeout=10).json()
        index, agents = listing["index"], listing["agents"]
        if until(agents):
            return agents
    raise AssertionError(f"the registry never showed what was awaited; last: {agents}")


def agent_ids(agents: Agents) -> set[str]:
    return {agent["agent_id"] for agent in agents}
