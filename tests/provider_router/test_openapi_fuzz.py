"""Property-based fuzzing of the router's own OpenAPI schema with schemathesis.

Every operation gets generated inputs, valid and invalid; no answer may be a 5xx, every answer
must match the schema the router publishes (status codes, content types, headers, bodies), and
schema-valid requests must be accepted. No check is left out. The router has no candidate
here, so a valid request naming a capability or model answers 404, which schemathesis
counts as accepted; the bodies are documented by msgspec's own schemas (see ``routes.py``),
without which Litestar's would allow ``top_p: 0`` and unknown fields that the router refuses.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from services.provider_router.provider_router import create_app
from services.provider_router.settings import RouterSettings

# Removed when the test process exits (a module-level app needs its folder at import).
_folder = tempfile.TemporaryDirectory(prefix="pas-fuzz-router-")
_app = create_app(
    RouterSettings(
        use_registry=False,
        database_url=f"sqlite:///{_folder.name}/router.db",
        log_level="ERROR",
    )
)
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_router_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()
