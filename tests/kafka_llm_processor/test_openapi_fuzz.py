"""Property-based fuzzing of the Kafka LLM processor's HTTP surface with schemathesis.

The processor runs as a real process on the real broker (its own, empty topics: no document
arrives, so its LLM is never asked and may be unreachable). Its HTTP surface is the service
kit's (health, metrics, the OpenAPI document); every operation gets generated inputs, valid
and invalid; no answer may be a 5xx, and every answer must match the schema the processor
publishes.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from libs.common.kafka.topics import ensure_topics
from services.kafka_llm_processor.app import create_app
from services.kafka_llm_processor.settings import ProcessorSettings
from tests.kafka_llm_processor.conftest import PROCESSOR_APP
from tests.support.openapi_document import published
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.slow

PORT = free_port()
# The app in this process is never started: only its OpenAPI document is read, encoded as the
# processor serves it at /schema/openapi.json.
DOCUMENT = published(create_app(ProcessorSettings()))
schema = schemathesis.openapi.from_dict(DOCUMENT)
schema.config.update(base_url=f"http://127.0.0.1:{PORT}", request_timeout=30)


@pytest.fixture(scope="module")
def processor(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    run = uuid.uuid4().hex[:8]
    topics = {f"fuzz-docs-{run}": 3, f"fuzz-results-{run}": 1, f"fuzz-dlq-{run}": 1}
    asyncio.run(ensure_topics(kafka_bootstrap, topics))
    folder = Path(tmp_path_factory.mktemp("processor-fuzz"))
    process = ServiceProcess(
        PROCESSOR_APP,
        PORT,
        {
            "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            "INPUT_TOPIC": f"fuzz-docs-{run}",
            "OUTPUT_TOPIC": f"fuzz-results-{run}",
            "DLQ_TOPIC": f"fuzz-dlq-{run}",
            "PROCESSOR_GROUP_ID": f"fuzz-{run}",
            "LLM_URL": f"http://127.0.0.1:{free_port()}/v1",
            "PROCESSOR_SPILL_DIR": str(folder / "spill"),
        },
        folder / "processor.log",
    ).start()
    yield
    process.stop()


@pytest.mark.usefixtures("processor")
@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_processor_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()
