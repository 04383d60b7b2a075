"""The Airflow side without Airflow: ``dags/pas_trigger.py`` against a real broker and a real
runner, and the operators in ``dags/pas_airflow/`` read as source (tests/airflow/ drives real
Airflow)."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from dags import pas_trigger
from dags.pas_trigger import (
    KafkaTarget,
    WorkflowFailed,
    WorkflowTimeout,
    build_trigger,
    event_id_for,
    run_workflow,
    workflow_run_id_for,
)
from libs.common.schemas.workflows import WorkflowResult, WorkflowTriggered
from tests.langgraph_runner.conftest import Topics
from tests.support.processes import REPO_ROOT


def target(bootstrap: str, topics: Topics) -> KafkaTarget:
    return KafkaTarget(bootstrap, events_topic=topics.events, results_topic=topics.results)


def test_the_trigger_is_the_event_the_runner_accepts() -> None:
    event = build_trigger(
        "document_analysis",
        {"content": "text"},
        workflow_run_id="pas_document_analysis:scheduled__2025-01-27T06:00:00+00:00",
        metadata={"dag_id": "pas_document_analysis"},
    )

    decoded = msgspec.json.decode(msgspec.json.encode(event), type=WorkflowTriggered)
    assert decoded.event_type == "workflow.triggered"
    assert decoded.source == "airflow"
    assert decoded.timestamp.tzinfo is not None
    assert decoded.payload == {"content": "text"}


def test_a_long_dag_id_and_run_id_give_a_key_the_runner_takes() -> None:
    """Airflow takes a DAG id and a run id of 250 characters each; ``<dag_id>:<run_id>`` then
    passed the runner's 250 and every try of the task failed on it."""
    dag_id, run_id = "d" * 230, "manual__2025-01-27T10:00:00.123456+00:00"
    other_run = run_id.replace("10:00", "11:00")

    key = workflow_run_id_for(dag_id, run_id)
    event = build_trigger("document_analysis", {"content": "x"}, workflow_run_id=key)

    decoded = msgspec.json.decode(msgspec.json.encode(event), type=WorkflowTriggered)
    assert decoded.workflow_run_id == key
    assert len(key) == 250
    assert key == workflow_run_id_for(dag_id, run_id)  # every try: the same key
    assert key != workflow_run_id_for(dag_id, other_run)
    assert workflow_run_id_for("pas_x", run_id) == f"pas_x:{run_id}"  # short: as it was


def test_event_ids_are_one_per_task_try() -> None:
    first = event_id_for("dag", "run_1", "trigger", 1)

    assert event_id_for("dag", "run_1", "trigger", 1) == first
    assert event_id_for("dag", "run_1", "trigger", 2) != first
    assert event_id_for("dag", "run_2", "trigger", 1) != first


def test_the_target_comes_from_the_environment() -> None:
    found = KafkaTarget.from_env(
        {"KAFKA_BROKERS": "kafka:9092", "RUNNER_RESULTS_TOPIC": "results-x"}
    )

    assert found == KafkaTarget("kafka:9092", "workflow-events", "results-x")
    with pytest.raises(RuntimeError, match="KAFKA_BOOTSTRAP_SERVERS"):
        KafkaTarget.from_env({})


async def test_a_task_triggers_a_workflow_and_gets_its_result(
    kafka_runner: AsyncTestClient[Any], kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    event = build_trigger(
        "probe", {"log": str(tmp_path / "log"), "value": 3}, workflow_run_id="dag:run_1"
    )

    # Synchronously, in a worker thread, as an Airflow task calls it.
    result = await asyncio.to_thread(run_workflow, target(kafka_bootstrap, topics), event, 60)

    decoded = msgspec.convert(result, WorkflowResult, strict=False)
    assert decoded.event_type == "workflow.completed"
    assert decoded.event_id == event["event_id"]
    assert decoded.workflow_run_id == "dag:run_1"
    assert decoded.payload.output == {"visited": ["a", "b", "c"], "value": 3}


async def test_a_wait_that_starts_after_the_result_still_finds_it(
    kafka_runner: AsyncTestClient[Any], kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    kafka = target(kafka_bootstrap, topics)
    event = build_trigger("probe", {"log": str(tmp_path / "log")}, workflow_run_id="dag:run_2")

    receipt = await pas_trigger.publish_trigger(kafka, event)
    first = await pas_trigger.wait_for_result(kafka, receipt, 60)
    again = await pas_trigger.wait_for_result(kafka, receipt, 60)  # a retried wait task

    assert first == again
    assert first["event_id"] == event["event_id"]


async def test_a_failed_workflow_raises_with_the_runner_s_reason(
    kafka_runner: AsyncTestClient[Any], kafka_bootstrap: str, topics: Topics, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.touch()
    event = build_trigger(
        "probe", {"log": str(tmp_path / "log"), "broken": str(broken)}, workflow_run_id="dag:3"
    )

    with pytest.raises(WorkflowFailed, match="ValueError") as failed:
        await asyncio.to_thread(run_workflow, target(kafka_bootstrap, topics), event, 60)

    assert failed.value.result["event_type"] == "workflow.failed"
    assert failed.value.result["event_id"] == event["event_id"]


async def test_no_result_in_time_raises_a_timeout(kafka_bootstrap: str, topics: Topics) -> None:
    receipt = {
        "event_id": "nobody-answers",
        "workflow_id": "probe",
        "workflow_run_id": "dag:4",
        "sent_at_ms": 0,
    }

    with pytest.raises(WorkflowTimeout, match="nobody-answers"):
        await pas_trigger.wait_for_result(target(kafka_bootstrap, topics), receipt, 1)


def test_the_operators_use_only_what_pas_trigger_offers() -> None:
    imported = {
        alias.name
        for path in (REPO_ROOT / "dags" / "pas_airflow").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "pas_trigger"
        for alias in node.names
    }

    assert imported
    assert all(hasattr(pas_trigger, name) for name in imported)
