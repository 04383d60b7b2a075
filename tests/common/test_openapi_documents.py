"""Each service publishes one OpenAPI document, the same at every start.

Litestar makes up an example for a response documented by its type unless told not to
(``libs/common/kit/openapi.py``'s ``documented_answer``): random values, new at each start (a
chat answer's ``index`` of 9849, a ``logprob`` of -9e8), which mislead a reader and make a
client's generated code change with every restart. Two apps built alike must publish the same
document; the document is the one each serves at ``/schema/openapi.json`` (read here without
starting the app, as the schema-fuzzing tests do).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from litestar import Litestar

from services.analytics.app import create_app as create_analytics
from services.analytics.settings import AnalyticsSettings
from services.kafka_llm_processor.app import create_app as create_processor
from services.kafka_llm_processor.settings import ProcessorSettings
from services.langgraph_runner.app import create_app as create_runner
from services.langgraph_runner.settings import RunnerSettings
from services.llm.llama31_8b_service import Llama31Settings
from services.llm.llama31_8b_service import create_app as create_llama31
from services.llm.tinyllama_service import TinyLlamaSettings
from services.llm.tinyllama_service import create_app as create_tinyllama
from services.llm.tlc_classifier_service import TLCSettings
from services.llm.tlc_classifier_service import create_app as create_tlc
from services.provider_router.provider_router import create_app as create_router
from services.provider_router.settings import RouterSettings
from services.registry.registry_service import create_app as create_registry
from services.registry.settings import RegistrySettings
from services.versioning.app import create_app as create_versioning
from services.versioning.settings import VersioningSettings
from tests.support.openapi_document import published

SERVICES: dict[str, Callable[[Path], Litestar]] = {
    "registry": lambda folder: create_registry(
        RegistrySettings(database_url=f"sqlite:///{folder}/registry.db")
    ),
    "provider_router": lambda folder: create_router(
        RouterSettings(use_registry=False, database_url=f"sqlite:///{folder}/router.db")
    ),
    "llama31_8b": lambda _: create_llama31(Llama31Settings(register=False)),
    "tinyllama": lambda _: create_tinyllama(TinyLlamaSettings(register=False)),
    "tlc_classifier": lambda _: create_tlc(TLCSettings(register=False)),
    "kafka_llm_processor": lambda _: create_processor(ProcessorSettings()),
    "langgraph_runner": lambda folder: create_runner(
        RunnerSettings(checkpoint_path=f"{folder}/checkpoints.db", store_path=f"{folder}/runs.db")
    ),
    "versioning": lambda folder: create_versioning(VersioningSettings(repo_path=f"{folder}/repo")),
    "analytics": lambda _: create_analytics(AnalyticsSettings(consume=False)),
}


@pytest.mark.parametrize("service", SERVICES)
def test_a_service_publishes_the_same_document_at_every_start(service: str, tmp_path: Path) -> None:
    build = SERVICES[service]
    first, second = (tmp_path / "first", tmp_path / "second")
    for folder in (first, second):
        folder.mkdir()
    assert published(build(first)) == published(build(second))
