"""Property-based fuzzing of the version manager's own OpenAPI schema with schemathesis.

Every operation gets generated inputs, valid and invalid; no answer may be a 5xx, and every
answer must match the schema the service publishes (status codes, content types, bodies). Two
checks are left out on purpose:

- "schema-violating request accepted": Litestar converts lossless scalar forms in bodies (``0``
  for ``false``) instead of refusing them; that is leniency, not a defect (as for the registry);
- "schema-valid request rejected": rules across fields and across requests that a JSON Schema
  cannot state (the body's workflow id must be the path's, a split must sum to 1, a variant
  must name an existing version, ``latest`` cannot be moved) are refused with a 400 that names
  them; the other tests check those rules one by one.
"""

from __future__ import annotations

import tempfile
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from services.versioning.app import create_app
from services.versioning.settings import VersioningSettings

# Removed when the test process exits (a module-level app needs its folder at import).
_folder = tempfile.TemporaryDirectory(prefix="pas-fuzz-versioning-")
_app = create_app(VersioningSettings(repo_path=f"{_folder.name}/repo", log_level="ERROR"))
schema = schemathesis.openapi.from_asgi("/schema/openapi.json", _app)


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_versioning_api_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection, positive_data_acceptance])
