"""Shared fixtures: real registry apps (in-process and as uvicorn processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.registry.registry_service import create_app
from services.registry.settings import RegistrySettings
from tests.support.processes import ServiceProcess, free_port

REGISTRY_APP = "services.registry.registry_service:app"


def agent_json(agent_id: str = "llm_llama31_8b", **overrides: Any) -> dict[str, Any]:
    """An agent definition as the spec writes it (the Llama 3.1 8B wrapper by default)."""
    body: dict[str, Any] = {
        "agent_id": agent_id,
        "name": "Llama 3.1 8B Service",
        "tier": 2,
        "role": "execution",
        "capabilities": ["reasoning", "planning", "code_review", "explanation"],
        "endpoint": "http://localhost:8050",
        "transport": "rest",
        "cost_per_1k_tokens": 0.0,
        "metadata": {"model": "llama3.1:8b", "provider": "ollama", "parameters": "8B"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def registry_settings(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(
        database_url=f"sqlite:///{tmp_path}/registry.db",
        reap_interval_s=0.05,
        log_level="WARNING",
    )


RegistryClientFactory = Callable[..., AsyncTestClient[Any]]


@pytest.fixture
async def make_registry(
    registry_settings: RegistrySettings,
) -> AsyncIterator[Callable[..., Any]]:
    """Open registry apps with settings overrides; every one is shut down at the end."""
    clients: list[AsyncTestClient[Any]] = []

    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        settings = msgspec.structs.replace(registry_settings, **overrides)
        client = AsyncTestClient(app=create_app(settings))
        await client.__aenter__()
        clients.append(client)
        return client

    yield make
    for client in reversed(clients):
        await client.__aexit__(None, None, None)


@pytest.fixture
async def registry(make_registry: Callable[..., Any]) -> AsyncTestClient[Any]:
    client: AsyncTestClient[Any] = await make_registry()
    return client


@pytest.fixture
def registry_process_factory(tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start the registry as a real uvicorn process (stopped at the end)."""
    started: list[ServiceProcess] = []

    def start(port: int | None = None, **env: str) -> ServiceProcess:
        environment = {
            "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path}/registry-process.db",
            "REGISTRY_REAP_INTERVAL_S": "0.1",
            **env,
        }
        process = ServiceProcess(
            REGISTRY_APP, port or free_port(), environment, tmp_path / "registry.log"
        )
        started.append(process.start())
        return process

    yield start
    for process in started:
        process.stop()
