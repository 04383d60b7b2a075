"""The DAGs' view of PAS's wire (``dags/pas_airflow/wire.py`` and the JSON Schemas it publishes
in ``dags/pas_airflow/schemas/``) agrees with PAS's own types. Airflow gets the DAGs folder
alone, so these copies are what it knows of PAS; no Airflow needed here.

When a wire type changes, write the schemas again and review the diff:
``.venv/bin/python -m tests.airflow.test_wire_schemas``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import msgspec
import pytest
from jsonschema import Draft202012Validator

from dags import pas_trigger
from dags.pas_airflow import wire
from libs.common import constants
from libs.common.schemas import usage
from libs.common.schemas.documents import DocumentResult
from libs.common.schemas.json_schema import inline_schema
from libs.common.schemas.llm import ChatCompletion
from libs.common.schemas.workflows import RunRequest, RunStatus, WorkflowResult, WorkflowTriggered
from services.provider_router.wire import RouterChatRequest

WIRE_TYPES: dict[str, Any] = {
    "workflow_triggered": WorkflowTriggered,
    "workflow_result": WorkflowResult,
    "run_request": RunRequest,
    "run_status": RunStatus,
    "chat_completion_request": RouterChatRequest,
    "chat_completion": ChatCompletion,
    "document_result": DocumentResult,
}


def published(name: str) -> str:
    return json.dumps(inline_schema(WIRE_TYPES[name]), indent=2, sort_keys=True) + "\n"


def test_every_published_schema_is_a_pas_wire_type() -> None:
    assert set(wire.SCHEMAS) == set(WIRE_TYPES)
    assert {p.stem for p in wire.SCHEMA_DIR.glob("*.json")} == set(WIRE_TYPES)


@pytest.mark.parametrize("name", sorted(WIRE_TYPES))
def test_the_published_schema_is_the_wire_type_s_own(name: str) -> None:
    on_disk = (wire.SCHEMA_DIR / f"{name}.json").read_text()

    assert on_disk == published(name), (
        f"dags/pas_airflow/schemas/{name}.json is out of date: "
        ".venv/bin/python -m tests.airflow.test_wire_schemas"
    )


def test_ports_topics_and_headers_are_pas_s() -> None:
    assert wire.RUNNER_PORT == constants.LANGGRAPH_RUNNER_PORT
    assert wire.ROUTER_PORT == constants.PROVIDER_ROUTER_PORT
    assert wire.VERSIONING_PORT == constants.VERSIONING_PORT
    assert wire.TOPIC_WORKFLOW_EVENTS == constants.TOPIC_WORKFLOW_EVENTS
    assert wire.TOPIC_WORKFLOW_RESULTS == constants.TOPIC_WORKFLOW_RESULTS
    assert wire.TOPIC_LLM_RESULTS == constants.TOPIC_LLM_RESULTS
    assert wire.HEADER_WORKFLOW_ID == usage.HEADER_WORKFLOW_ID
    assert wire.HEADER_WORKFLOW_RUN_ID == usage.HEADER_WORKFLOW_RUN_ID
    # The DAGs' result reader waits at the broker as long as PAS's consumers do.
    assert pas_trigger.FETCH_MAX_WAIT_MS == constants.KAFKA_FETCH_MAX_WAIT_MS


def test_what_the_schema_refuses_is_named() -> None:
    event = {
        "event_id": "e-1",
        "event_type": "workflow.triggered",
        "timestamp": "2025-01-27T10:00:00",
        "source": "airflow",
        "workflow_id": "Document Analysis",
        "workflow_run_id": "dag:run",
        "payload": {},
        "surprise": 1,
    }

    with pytest.raises(wire.WireShapeError) as refused:
        wire.check("workflow_triggered", event)

    assert "workflow_id" in str(refused.value)
    assert "surprise" in str(refused.value)


class _Ask(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    desk: str
    model: str | None = None
    capability: str | None = None


_NOT_BOTH = {"not": {"required": ["model", "capability"]}}


class _Asks(msgspec.Struct, kw_only=True):
    # msgspec writes a Meta's schema beside the $ref: a rule of its own, and one keyword
    # (required) the definition holds too.
    one: Annotated[_Ask, msgspec.Meta(description="Ask one thing.", extra_json_schema=_NOT_BOTH)]
    named: Annotated[_Ask, msgspec.Meta(extra_json_schema={"required": ["model"]})]


def test_inlining_keeps_what_is_beside_a_ref_and_the_schema_takes_what_it_took() -> None:
    """JSON Schema 2020-12 applies the keywords beside a ``$ref`` with it; they were dropped."""
    inlined = inline_schema(_Asks)
    referenced = Draft202012Validator(msgspec.json.schema(_Asks))
    desk = {"desk": "fx"}
    bodies = [
        {"one": desk, "named": {**desk, "model": "m"}},
        {"one": {**desk, "model": "m", "capability": "c"}, "named": {**desk, "model": "m"}},
        {"one": desk, "named": desk},  # named without its model
        {"one": desk, "named": {"model": "m"}},  # named without its desk
    ]

    takes = [Draft202012Validator(inlined).is_valid(body) for body in bodies]

    assert "$ref" not in json.dumps(inlined)
    assert inlined["properties"]["one"]["description"] == "Ask one thing."
    assert takes == [True, False, False, False]
    assert takes == [referenced.is_valid(body) for body in bodies]


def test_a_service_s_own_token_wins_over_the_shared_one() -> None:
    assert wire.bearer("RUNNER_TOKEN", {}) == {}
    assert wire.bearer("RUNNER_TOKEN", {"PAS_TOKEN": "all"}) == {"Authorization": "Bearer all"}
    assert wire.bearer("RUNNER_TOKEN", {"PAS_TOKEN": "all", "RUNNER_TOKEN": "mine"}) == {
        "Authorization": "Bearer mine"
    }


if __name__ == "__main__":
    for schema_name in WIRE_TYPES:
        (wire.SCHEMA_DIR / f"{schema_name}.json").write_text(published(schema_name))
        print(f"wrote {wire.SCHEMA_DIR / schema_name}.json")
