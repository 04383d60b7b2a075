"""What PAS's operators send and where: ports, topics, headers and the wire shapes, as PAS
publishes them.

An Airflow deployment gets the DAGs folder alone, never PAS's ``libs/``: the shapes come from
the JSON Schemas in ``schemas/`` (each the ``inline_schema`` of a PAS wire type, checked equal
to it by PAS's tests, ``tests/airflow/test_wire_schemas.py``), and what the operators build is
checked against them before it leaves (a bad input fails the task with the field named, rather
than a dead letter on the runner's side). The constants below are checked equal to
``libs/common/constants.py`` by the same tests.

No Airflow import: PAS's tests read this module without Airflow.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

RUNNER_PORT = 6130
ROUTER_PORT = 6103
VERSIONING_PORT = 6140
TOPIC_WORKFLOW_EVENTS = "workflow-events"
TOPIC_WORKFLOW_RESULTS = "workflow-results"
TOPIC_LLM_RESULTS = "llm-results"  # the Kafka LLM processor's answers to documents
HEADER_WORKFLOW_ID = "X-PAS-Workflow-Id"
HEADER_WORKFLOW_RUN_ID = "X-PAS-Workflow-Run-Id"

SCHEMA_DIR = Path(__file__).with_name("schemas")
SCHEMAS = (
    "workflow_triggered",  # the event on workflow-events
    "workflow_result",  # workflow.completed / workflow.failed on workflow-results
    "run_request",  # POST /workflows/{id}/runs on the runner
    "run_status",  # its answer, and GET /runs/{id}
    "chat_completion_request",  # POST /v1/chat/completions on the router
    "chat_completion",  # its answer
    "document_result",  # the Kafka LLM processor's answer on llm-results
)


class WireShapeError(ValueError):
    """What an operator was about to send does not have PAS's shape; names the field."""


@cache
def schema(name: str) -> dict[str, Any]:
    """The published JSON Schema ``name`` (one of :data:`SCHEMAS`)."""
    if name not in SCHEMAS:
        raise KeyError(f"no published schema {name!r}; known: {', '.join(SCHEMAS)}")
    loaded: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    return loaded


def check(name: str, value: Any) -> None:
    """Raise :class:`WireShapeError` naming every field of ``value`` that ``name`` refuses."""
    from jsonschema import Draft202012Validator  # Airflow's own dependency  # noqa: PLC0415

    validator = Draft202012Validator(schema(name))
    problems = sorted(validator.iter_errors(value), key=lambda error: list(error.absolute_path))
    if problems:
        described = "; ".join(
            f"{'/'.join(str(p) for p in problem.absolute_path) or '(top level)'}: {problem.message}"
            for problem in problems[:5]
        )
        raise WireShapeError(f"not a valid {name}: {described}")


def service_url(variable: str, port: int, environ: Mapping[str, str] = os.environ) -> str:
    """``$variable`` (``RUNNER_URL``, ``ROUTER_URL``, ``VERSIONING_URL``), else the service on
    this machine at its default port."""
    return (environ.get(variable) or f"http://127.0.0.1:{port}").rstrip("/")


def bearer(variable: str, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """``Authorization`` from ``$variable`` (``RUNNER_TOKEN``...), else ``PAS_TOKEN`` (one
    token for every PAS service, as the services themselves fall back to it), else none."""
    token = environ.get(variable) or environ.get("PAS_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}
