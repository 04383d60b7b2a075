"""LLM service fixtures: the real embedded model, in-process and as a uvicorn process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import pytest_asyncio
from litestar.testing import AsyncTestClient

from services.llm.llama31_8b_service import Llama31Settings
from services.llm.profiles import LLAMA31_8B
from services.llm.service import build_runtime, create_llm_app
from services.llm.settings import LLMServiceSettings
from tests.support.model_threads import batch_threads
from tests.support.processes import ServiceProcess, free_port

LLAMA_APP = "services.llm.llama31_8b_service:app"
TLC_APP = "services.llm.tlc_classifier_service:app"


ON_THE_MODULES_LOOP = pytest.mark.asyncio(loop_scope="module")
"""The mark of a test that uses a module-scoped service (``shared_llm``): it must run on the
event loop that service was started on, the module's (pytest-asyncio 1.x)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that takes ``shared_llm`` without ``ON_THE_MODULES_LOOP``: it would run on
    a loop of its own and fail somewhere inside the service with a loop mismatch."""
    unmarked = sorted(
        item.nodeid
        for item in items
        if "shared_llm" in getattr(item, "fixturenames", ()) and not _on_the_modules_loop(item)
    )
    if unmarked:
        raise pytest.UsageError(f"tests take shared_llm without ON_THE_MODULES_LOOP: {unmarked}")


def _on_the_modules_loop(item: pytest.Item) -> bool:
    marker = item.get_closest_marker("asyncio")
    return marker is not None and marker.kwargs.get("loop_scope") == "module"


def default_llm_settings() -> Llama31Settings:
    """The Llama 3.1 8B wrapper as the tests run it in process: unregistered, a 1,024-token
    context, one thread a pass beside other pytest-xdist workers."""
    return Llama31Settings(
        register=False,
        context_length=1024,
        timeout_s=60,
        log_level="WARNING",
        batch_threads=batch_threads(),
    )


@pytest.fixture
def llm_settings() -> Llama31Settings:
    return default_llm_settings()


@pytest.fixture
def make_llm(llm_settings: Llama31Settings, open_app: Callable[..., Any]) -> Callable[..., Any]:
    """Open Llama 3.1 8B wrapper apps with settings overrides (the backend, say)."""

    async def make(**overrides: Any) -> AsyncTestClient[Any]:
        settings: LLMServiceSettings = msgspec.structs.replace(llm_settings, **overrides)
        client: AsyncTestClient[Any] = await open_app(
            create_llm_app(build_runtime(settings, LLAMA31_8B))
        )
        return client

    return make


@pytest.fixture
async def llm(make_llm: Callable[..., Any]) -> AsyncTestClient[Any]:
    """A fresh service of the default settings, for a test that reads what only a new one
    holds (metrics or measured latencies from zero, an empty prompt cache)."""
    client: AsyncTestClient[Any] = await make_llm()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_llm() -> AsyncIterator[AsyncTestClient[Any]]:
    """One service of the default settings for all of a module's tests that take it (each
    marked ``ON_THE_MODULES_LOOP``): loading the model, allocating its slots' caches and
    starting its batch engine took 7-10 s a test on the suite's busy cores, most of
    test_openai_api.py's time. Its tests must hold whatever the service answered before."""
    app = create_llm_app(build_runtime(default_llm_settings(), LLAMA31_8B))
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture(scope="session")
def llm_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The Llama 3.1 8B wrapper (embedded model) as a real uvicorn process, for real clients."""
    log = tmp_path_factory.mktemp("llm") / "llama31.log"
    process = ServiceProcess(
        LLAMA_APP,
        free_port(),
        {"LLAMA31_8B_REGISTER": "false", "LLAMA31_8B_CONTEXT_LENGTH": "2048"},
        Path(log),
    ).start()
    yield process
    process.stop()


CHAT = {"messages": [{"role": "user", "content": "Name three colours."}], "temperature": 0}
