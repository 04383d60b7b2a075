"""Property-based fuzzing of the analytics collector's own OpenAPI schema with schemathesis.

The collector runs as a real uvicorn process on each store: DuckDB, and PostgreSQL when
PAS_TEST_POSTGRES_DSN is set. Events come over ``POST /events`` (Kafka off), so generated
batches reach the store and the reports, exports and rollups then read what they stored. Every
operation gets generated inputs, valid and invalid; no answer may be a 5xx, and every answer
must match the schema the collector publishes. Two checks are left out on purpose:

- "schema-violating request accepted": Litestar converts lossless scalar forms (``0`` for
  ``false``) instead of refusing them (as for the registry);
- "schema-valid request rejected": rules across parameters that a JSON Schema cannot state
  (``from`` before ``to``, a trend's bucket count within ``ANALYTICS_MAX_TREND_POINTS``, a rollup
  at an hour boundary) and times given as ISO 8601 strings are refused with a 400 that names
  them; ``test_http_input.py`` checks those rules one by one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from services.analytics.app import create_app
from services.analytics.settings import AnalyticsSettings
from tests.analytics.conftest import COLLECTOR_APP, PG_OBJECTS, POSTGRES_DSN
from tests.support.openapi_document import published
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.slow

# The app in this process is never started: only its OpenAPI document is read, encoded as the
# collector serves it at /schema/openapi.json.
DOCUMENT = published(create_app(AnalyticsSettings(consume=False)))
PORTS = {"duckdb": free_port(), "postgres": free_port()}


def _schema(store: str) -> OpenApiSchema:
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.config.update(base_url=f"http://127.0.0.1:{PORTS[store]}", request_timeout=60)
    return schema


def _start(store: str, folder: Path, **environment: str) -> ServiceProcess:
    return ServiceProcess(
        COLLECTOR_APP,
        PORTS[store],
        {
            "ANALYTICS_CONSUME": "false",
            "ANALYTICS_DB_PATH": str(folder / "analytics.duckdb"),
            **environment,
        },
        folder / f"collector-{store}.log",
    ).start()


@pytest.fixture(scope="module")
def duckdb_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    process = _start("duckdb", tmp_path_factory.mktemp("analytics-fuzz"))
    yield
    process.stop()


@pytest.fixture(scope="module")
def postgres_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
        for statement in PG_OBJECTS:
            conn.execute(statement)
    process = _start(
        "postgres",
        tmp_path_factory.mktemp("analytics-fuzz-pg"),
        ANALYTICS_DATABASE_URL=POSTGRES_DSN,
    )
    yield
    process.stop()


@pytest.mark.usefixtures("duckdb_collector")
@_schema("duckdb").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_collector_on_duckdb_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection, positive_data_acceptance])


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_DSN, reason="set PAS_TEST_POSTGRES_DSN to fuzz the PG store")
@pytest.mark.usefixtures("postgres_collector")
@_schema("postgres").parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_collector_on_postgres_conforms_to_its_schema(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=[negative_data_rejection, positive_data_acceptance])
