"""Shared fixtures: real registry apps (in-process and as uvicorn processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from schemathesis.pytest.plugin import SchemathesisFunction

from libs.common.kafka.broker import EmbeddedBroker
from libs.common.kafka.topics import ensure_topics
from services.llm.model_files import packaged_gguf
from services.registry.registry_service import create_app
from services.registry.settings import RegistrySettings
from tests.support.postgres import fresh_database
from tests.support.processes import (
    REPO_ROOT,
    ServiceProcess,
    ServiceProcesses,
    answers_200,
    free_port,
)

REGISTRY_APP = "services.registry.registry_service:app"


_GIVEN_DSN = "_PAS_TEST_POSTGRES_GIVEN_DSN"
"""PAS_TEST_POSTGRES_DSN as given, kept for the pytest-xdist workers this process starts (they
inherit its environment, the variable already pointed at its own database)."""


def _own_postgres_database() -> None:
    """Give this process's tests a PostgreSQL database of its own (see
    tests/support/postgres.py) before any test module reads PAS_TEST_POSTGRES_DSN: each
    pytest-xdist worker's, or ``main``'s in one process (``-n 0``), so that no run resets the
    tables of the database the variable names itself. (Under xdist the controller, which runs
    no test, makes one too: it cannot tell itself from ``-n 0`` at import; 0.4 s.)"""
    dsn = os.environ.get(_GIVEN_DSN) or os.environ.get("PAS_TEST_POSTGRES_DSN")
    if dsn:
        os.environ[_GIVEN_DSN] = dsn
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        os.environ["PAS_TEST_POSTGRES_DSN"] = fresh_database(dsn, worker)


# At import, not in pytest_configure: ``pytest tests/analytics`` imports that folder's
# conftest (which reads the variable) before pytest_configure runs, and this one before it.
_own_postgres_database()

# Parallel workers each start model services on the same cores: one thread a pass each, or a
# pass's threads keep waiting for preempted ones (a prompt read took 16.6 s on two threads
# beside two busy processes and 2.3 s on one). Services the tests start inherit it.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("LLM_BATCH_THREADS", "1")

# The embedded broker holds a consumer group's join for half its members' session timeout (5 s
# at the services' default of 10 s), and moves a killed member's partitions after all of it:
# the services the tests start as processes use 3 s.
for _variable, _value in (
    ("PROCESSOR_SESSION_TIMEOUT_S", "3"),
    ("RUNNER_SESSION_TIMEOUT_S", "3"),
    ("ANALYTICS_SESSION_TIMEOUT_S", "3"),
    ("VERSIONING_KAFKA_SESSION_TIMEOUT_MS", "3000"),
):
    os.environ.setdefault(_variable, _value)


pytest_plugins = ["pytester", "tests.support.coverage_cases"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    _order_operation_tests(items)
    _longest_modules_first(items)
    _refuse_shared_node_ids(items)


LONGEST_MODULES = (
    "tests/llm/test_prompt_reuse.py",
    "tests/kafka_llm_processor/test_processor.py",
    "tests/airflow/test_running_airflow.py",
    "tests/airflow/test_operators.py",
    "tests/langgraph_runner/test_kafka.py",
    "tests/cli/test_dlq.py",
    "tests/kafka_llm_processor/test_long_documents.py",
    "tests/llm/test_openapi_fuzz.py",
    "tests/langgraph_runner/test_workflows.py",
    "tests/langgraph_runner/test_experiment_outcomes.py",
    "tests/llm/test_batch_engine.py",
    "tests/analytics/test_http_input.py",
    "tests/versioning/test_ab_statistics.py",
    "tests/provider_router/test_spend_persistence.py",
    "tests/kafka/test_work_loop.py",
)
"""The modules that take longest, a minute to three each (pytest-xdist's three workers, session
46's runs), longest first."""


def _longest_modules_first(items: list[pytest.Item]) -> None:
    """Hand pytest-xdist the longest modules first, then the others by their number of tests
    (what xdist does itself, which ``--no-loadscope-reorder`` in pyproject.toml turns off for
    this order). By count alone, test_prompt_reuse.py's nine tests of five minutes started
    among the last and kept one worker busy after the others had finished. The sort is stable:
    a module's tests keep their order."""
    rank = {module: place for place, module in enumerate(LONGEST_MODULES)}
    counts = Counter(_module(item) for item in items)
    items.sort(key=lambda item: (rank.get(_module(item), len(rank)), -counts[_module(item)]))


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


def _order_operation_tests(items: list[pytest.Item]) -> None:
    """Put each module's schemathesis tests (one an API operation) in node id order, in the
    places they hold. They come in the order of the OpenAPI document's paths, and a handler
    that serves two paths lists them in set order, which differs between processes: the
    pytest-xdist workers would collect different orders, which xdist refuses."""
    places: dict[Path, list[int]] = defaultdict(list)
    for place, item in enumerate(items):
        if isinstance(item, SchemathesisFunction):
            places[item.path].append(place)
    for module_places in places.values():
        ordered = sorted((items[place] for place in module_places), key=lambda i: i.nodeid)
        for place, item in zip(module_places, ordered, strict=True):
            items[place] = item


def _refuse_shared_node_ids(items: list[pytest.Item]) -> None:
    """Refuse tests that share a node id: pytest-xdist schedules by node id, so it would run the
    first of them and drop the rest without a word (schemathesis' per-operation tests did, under
    pytest 9.2)."""
    counts = Counter(item.nodeid for item in items)
    repeated = sorted(nodeid for nodeid, count in counts.items() if count > 1)
    if repeated:
        raise pytest.UsageError(f"tests share node ids, so some would not run: {repeated}")


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
async def open_app() -> AsyncIterator[Callable[[Litestar], Awaitable[AsyncTestClient[Any]]]]:
    """Start apps (lifespan included) behind test clients; all are shut down at the end."""
    async with AsyncExitStack() as stack:

        async def open_client(app: Litestar) -> AsyncTestClient[Any]:
            return await stack.enter_async_context(AsyncTestClient(app=app))

        yield open_client


@pytest.fixture
def make_registry(
    registry_settings: RegistrySettings, open_app: Callable[[Litestar], Any]
) -> Callable[..., Any]:
    """Open registry apps with settings overrides."""

    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        client: AsyncTestClient[Any] = await open_app(
            create_app(msgspec.structs.replace(registry_settings, **overrides))
        )
        return client

    return make


@pytest.fixture
async def registry(make_registry: Callable[..., Any]) -> AsyncTestClient[Any]:
    client: AsyncTestClient[Any] = await make_registry()
    return client


@pytest.fixture
def service_processes(tmp_path: Path) -> Iterator[ServiceProcesses]:
    """Start PAS services as real uvicorn processes for one test; all stopped at its end."""
    processes = ServiceProcesses(tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def registry_process_factory(
    service_processes: ServiceProcesses, tmp_path: Path
) -> Callable[..., ServiceProcess]:
    """Start the registry as a real uvicorn process (stopped at the end)."""

    def start(port: int | None = None, **env: str) -> ServiceProcess:
        environment = {
            "REGISTRY_DATABASE_URL": f"sqlite:///{tmp_path}/registry-process.db",
            "REGISTRY_REAP_INTERVAL_S": "0.1",
            **env,
        }
        return service_processes.start(REGISTRY_APP, environment, name="registry", port=port)

    return start


@pytest.fixture(scope="session")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama.cpp's real OpenAI-compatible server, on the GGUF PAS ships."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("llama-server")) / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(packaged_gguf()),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "1024",
                "--model_alias",
                "smollm2",
            ],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not answers_200(process, f"{url}/v1/models", timeout_s=60):
            raise RuntimeError(f"llama.cpp's server did not start:\n{log.read_text()}")
        yield url
    finally:
        process.terminate()
        process.wait(15)


def docker_engine_answers() -> bool:
    try:
        import docker  # noqa: PLC0415

        return bool(docker.from_env(timeout=2).ping())
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real broker with PAS's topics: the cluster KAFKA_BOOTSTRAP_SERVERS names if set, else
    Kafka in a container where a Docker engine answers, else the embedded Tansu broker."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        asyncio.run(ensure_topics(configured))
        yield configured
        return
    if docker_engine_answers():
        from testcontainers.kafka import KafkaContainer  # noqa: PLC0415

        with KafkaContainer() as kafka:
            bootstrap = kafka.get_bootstrap_server()
            asyncio.run(ensure_topics(bootstrap))
            yield bootstrap
        return
    log = Path(tmp_path_factory.mktemp("kafka")) / "broker.log"
    with EmbeddedBroker(port=free_port(), log_path=log) as broker:
        asyncio.run(ensure_topics(broker.bootstrap_servers))
        yield broker.bootstrap_servers
