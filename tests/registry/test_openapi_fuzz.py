"""Property-based fuzzing of the registry's own OpenAPI schema with schemathesis.

Every operation gets generated inputs, valid and invalid; no answer may be a 5xx, every answer
must match the schema the registry publishes (status codes, content types, headers, bodies), and
schema-valid requests must be accepted. One check is left out on purpose: Litestar converts
lossless scalar forms in bodies (``0`` for ``false``, ``3.0`` for ``3``) instead of refusing
them, so "schema-violating request accepted" would report that leniency, not a defect.

One rule is not in the schema: no string or key of an agent's ``metadata`` (an open object, at
any depth) may hold U+0000, which PostgreSQL's JSONB cannot store. JSON Schema cannot say that
of an object it leaves open, so generated metadata goes without it (``map_body``) and
``test_bad_input`` checks the refusal.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from services.registry.registry_service import create_app
from services.registry.settings import RegistrySettings

# Removed when the test process exits (a module-level app needs its folder at import).
_folder = tempfile.TemporaryDirectory(prefix="pas-fuzz-registry-")
_app = create_app(
    RegistrySettings(
        database_url=f"sqlite:///{_folder.name}/registry.db",
        max_wait_s=0.05,
        log_level="ERROR",
    )
)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


@schema.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        return {**body, "metadata": _without_nul(body["metadata"])}
    return body


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_registry_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection])
