"""LLM service fixtures: the real embedded model, in-process and as a uvicorn process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from services.llm.llama31_8b_service import Llama31Settings
from services.llm.profiles import LLAMA31_8B
from services.llm.service import build_runtime, create_llm_app
from services.llm.settings import LLMServiceSettings
from tests.support.model_threads import batch_threads
from tests.support.processes import ServiceProcess, free_port

LLAMA_APP = "services.llm.llama31_8b_service:app"
TLC_APP = "services.llm.tlc_classifier_service:app"


@pytest.fixture
def llm_settings() -> Llama31Settings:
    return Llama31Settings(
        register=False,
        context_length=1024,
        timeout_s=60,
        log_level="WARNING",
        batch_threads=batch_threads(),
    )


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
    client: AsyncTestClient[Any] = await make_llm()
    return client


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
