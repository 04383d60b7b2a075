"""Property-based fuzzing of the runner's own OpenAPI schema with schemathesis.

Every operation gets generated inputs, valid and invalid; no answer may be a 5xx, and every
answer must match the schema the runner publishes. As for the registry, the check that
schema-violating requests are refused is left out: Litestar converts lossless scalar forms
(``0`` for ``false``) instead of refusing them. Runs started by valid requests fail fast: their
model is unreachable and their nodes have one attempt.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from services.langgraph_runner.app import create_app
from services.langgraph_runner.settings import RunnerSettings
from tests.support.processes import free_port

# Removed when the test process exits (a module-level app needs its folder at import).
_folder = tempfile.TemporaryDirectory(prefix="pas-fuzz-runner-")
_app = create_app(
    RunnerSettings(
        llm_url=f"http://127.0.0.1:{free_port()}",
        checkpoint_path=f"{_folder.name}/checkpoints.db",
        store_path=f"{_folder.name}/runs.db",
        node_max_attempts=1,
        max_wait_s=0.05,
        log_level="ERROR",
    )
)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_runner_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection])
