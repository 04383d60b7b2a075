"""Router fixtures: a real registry, real PAS LLM services (embedded model), fake peers, and
the router in process or as real uvicorn processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from services.provider_router.provider_router import create_app
from services.provider_router.settings import RouterSettings
from tests.conftest import agent_json
from tests.support.polling import poll, poll_async
from tests.support.processes import ServiceProcess, ServiceProcesses, free_port

ROUTER_APP = "services.provider_router.provider_router:app"
LLM_APPS = {
    "llama31_8b": ("services.llm.llama31_8b_service:app", "LLAMA31_8B_"),
    "tinyllama": ("services.llm.tinyllama_service:app", "TINYLLAMA_"),
}


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("router-registry")
    process = ServiceProcess(
        "services.registry.registry_service:app",
        free_port(),
        {
            "REGISTRY_DATABASE_URL": f"sqlite:///{tmp}/registry.db",
            "REGISTRY_REAP_INTERVAL_S": "0.1",
        },
        Path(tmp) / "registry.log",
    ).start()
    yield process.url
    process.stop()


@pytest.fixture
def start_llm(
    registry_url: str, service_processes: ServiceProcesses
) -> Callable[..., ServiceProcess]:
    """Start a PAS LLM service registered with the test registry; stopped at the end."""

    def start(name: str = "llama31_8b", port: int | None = None, **env: str) -> ServiceProcess:
        app, prefix = LLM_APPS[name]
        port = port or free_port()
        environment = {
            "REGISTRY_URL": registry_url,
            f"{prefix}PORT": str(port),
            f"{prefix}CONTEXT_LENGTH": "1024",
            **env,
        }
        return service_processes.start(app, environment, name=name, port=port)

    return start


@pytest.fixture
def register_agent(registry_url: str) -> Iterator[Callable[..., None]]:
    """Register an agent directly (a fake peer, or a dead endpoint); removed at the end."""
    added: list[str] = []

    def register(
        agent_id: str, endpoint: str, capabilities: list[str], model: str, **metadata: Any
    ) -> None:
        httpx.post(
            f"{registry_url}/register?ttl=0",
            json=agent_json(
                agent_id,
                endpoint=endpoint,
                capabilities=capabilities,
                metadata={"model": model, **metadata},
            ),
        ).raise_for_status()
        added.append(agent_id)

    yield register
    for agent_id in added:
        httpx.delete(f"{registry_url}/agents/{agent_id}")


@pytest.fixture
def make_router(
    registry_url: str, open_app: Callable[..., Any], tmp_path: Path
) -> Callable[..., Any]:
    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        defaults: dict[str, Any] = {
            "registry_url": registry_url,
            "database_url": f"sqlite:///{tmp_path}/router.db",
            "breaker_failures": 2,
            "breaker_cooldown_s": 1.0,
            "retry_backoff_s": 0.01,
            "log_level": "WARNING",
        }
        settings = RouterSettings(**{**defaults, **overrides})
        client: AsyncTestClient[Any] = await open_app(create_app(settings))
        return client

    return make


@pytest.fixture
def start_router(
    service_processes: ServiceProcesses, tmp_path: Path
) -> Callable[..., ServiceProcess]:
    """Start the router as a real uvicorn process, without the registry unless told, on a
    SQLite file in ``tmp_path`` unless told (``ROUTER_*`` overrides); stopped at the end."""

    def start(**env: str) -> ServiceProcess:
        environment = {
            "ROUTER_USE_REGISTRY": "false",
            "ROUTER_DATABASE_URL": f"sqlite:///{tmp_path}/router.db",
            "LOG_LEVEL": "WARNING",
            **env,
        }
        return service_processes.start(ROUTER_APP, environment, name="router")

    return start


def providers_file(tmp_path: Path, *providers: str) -> str:
    """A providers file in ``tmp_path`` holding ``providers`` (TOML, as :func:`provider_toml`
    writes them); its path."""
    path = tmp_path / "providers.toml"
    path.write_text("\n".join(providers))
    return str(path)


def provider_toml(
    name: str,
    base_url: str,
    model: str,
    capability: str,
    *,
    input_per_1k: float = 1.0,
    output_per_1k: float | None = None,
    provider_lines: str = "",
    model_lines: str = "",
) -> str:
    """One provider of a providers file: ``name`` at ``base_url``, serving ``model`` for
    ``capability``, its tokens priced in USD per 1k (out as in unless ``output_per_1k``);
    ``provider_lines`` and ``model_lines``: more keys of the provider and of its model
    (``kind``, ``api_key_env``, ``rpm``...), as TOML."""
    output = input_per_1k if output_per_1k is None else output_per_1k
    return (
        f'[[providers]]\nname = "{name}"\nbase_url = "{base_url}"\n{provider_lines}\n'
        f'[[providers.models]]\nname = "{model}"\ncapabilities = ["{capability}"]\n'
        f"input_per_1k = {input_per_1k}\noutput_per_1k = {output}\n{model_lines}\n"
    )


def one_provider(
    tmp_path: Path,
    url: str,
    name: str,
    capability: str,
    budget_usd: float | None = None,
    rpm: int | None = None,
) -> str:
    """A providers file with one OpenAI-compatible provider ``name`` serving model ``name``,
    at 1 USD per 1k tokens in and out (``rpm``: its requests a minute)."""
    budget = "" if budget_usd is None else f"daily_budget_usd = {budget_usd}"
    limit = "" if rpm is None else f"rpm = {rpm}"
    return providers_file(
        tmp_path,
        provider_toml(
            name, f"{url}/v1", name, capability, provider_lines=budget, model_lines=limit
        ),
    )


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
    """Poll ``check`` until it returns something truthy (returned); fail naming ``what``."""
    found = poll(check, timeout_s=timeout_s)
    assert found, f"never saw {what}"
    return found


async def candidates_by_id(router: AsyncTestClient[Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in (await router.get("/providers")).json()["candidates"]}


async def wait_for_candidates(
    router: AsyncTestClient[Any], expected: set[str], timeout_s: float = 20
) -> dict[str, Any]:
    """Until the router's candidates (by id) include ``expected``; returns them by id."""
    rows = await poll_async(
        lambda: candidates_by_id(router),
        until=lambda rows: expected <= set(rows),
        timeout_s=timeout_s,
        interval_s=0.1,
    )
    assert expected <= set(rows), f"router never saw {expected - set(rows)}; it has {set(rows)}"
    return rows


def ask(capability: str, **extra: Any) -> dict[str, Any]:
    return {
        "capability": capability,
        "messages": [{"role": "user", "content": "Is a bond a loan?"}],
        "max_tokens": 8,
        "temperature": 0,
        **extra,
    }


async def wait_for_circuit(
    router: AsyncTestClient[Any], candidate_id: str, circuit: str, timeout_s: float = 60
) -> dict[str, Any]:
    """Until the router lists ``candidate_id`` with its circuit ``circuit``; returns its row."""

    async def row() -> dict[str, Any] | None:
        return (await candidates_by_id(router)).get(candidate_id)

    found = await poll_async(
        row,
        until=lambda row: row is not None and row["circuit"] == circuit,
        timeout_s=timeout_s,
        interval_s=0.1,
    )
    assert found is not None, f"the router never listed {candidate_id}"
    assert found["circuit"] == circuit, f"{candidate_id} never had its circuit {circuit}: {found}"
    return found
