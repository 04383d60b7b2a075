"""What an operator sees first: the catalog, each workflow's schema and graph, health."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from services.langgraph_runner.catalog import Catalog, build_deps, load_extra_workflows
from services.langgraph_runner.errors import WorkflowLoadError
from services.langgraph_runner.settings import RunnerSettings
from tests.langgraph_runner.probes import PROBE

SHIPPED = {"document_analysis", "orchestrator_worker", "supervisor", "network", "tool_agent"}
NODES = {
    "document_analysis": ["analyse", "structure"],
    "orchestrator_worker": ["orchestrate", "worker", "assemble"],
    "supervisor": ["supervisor", "quant", "risk", "analyst"],
    "network": ["pricing", "risk", "compliance", "human_review", "desk_note"],
    "tool_agent": ["agent", "tools"],
    "probe": ["a", "b", "c"],
}


async def test_every_workflow_is_listed_with_its_schema_prompts_and_graph(
    runner: AsyncTestClient[Any],
) -> None:
    response = await runner.get("/workflows")

    assert response.status_code == 200
    workflows = {w["id"]: w for w in response.json()["workflows"]}
    assert set(workflows) == SHIPPED | {"probe"}
    for workflow_id, info in workflows.items():
        assert info["nodes"] == NODES[workflow_id]
        assert info["input_schema"]["type"] == "object"
        assert info["description"]
        mermaid = info["mermaid"]
        assert "graph TD;" in mermaid
        for node in info["nodes"]:
            assert f"\t{node}(" in mermaid
    assert workflows["document_analysis"]["input_schema"]["required"] == ["content"]
    assert set(workflows["network"]["input_schema"]["required"]) == {"ticker", "side", "quantity"}
    assert "analyse" in workflows["document_analysis"]["prompts"]
    # The graphs' shapes: fan-out by Send, routing by Command, conditional hand-offs.
    assert "orchestrate -.-> worker;" in workflows["orchestrator_worker"]["mermaid"]
    assert "supervisor -.-> quant;" in workflows["supervisor"]["mermaid"]
    assert "risk -.-> pricing;" in workflows["network"]["mermaid"]
    assert "agent -.-> tools;" in workflows["tool_agent"]["mermaid"]


async def test_one_workflow_and_an_unknown_one(runner: AsyncTestClient[Any]) -> None:
    found = await runner.get("/workflows/network")
    missing = await runner.get("/workflows/no_such_flow")

    assert found.status_code == 200
    assert found.json()["id"] == "network"
    assert missing.status_code == 404
    assert "no_such_flow" in missing.json()["detail"]
    assert "document_analysis" in missing.json()["detail"]


async def test_health_metrics_and_openapi(runner: AsyncTestClient[Any]) -> None:
    health = await runner.get("/health")
    metrics = await runner.get("/metrics")
    schema = await runner.get("/schema/openapi.json")

    assert health.status_code == 200
    details = health.json()["details"]
    assert health.json()["status"] == "healthy"
    assert set(details["workflows"]) == SHIPPED | {"probe"}
    assert details["checkpoints"] == "sqlite"
    assert "kafka" not in details
    assert metrics.status_code == 200
    assert "pas_runner_active_runs" in metrics.text
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in (
        "/workflows",
        "/workflows/{workflow_id}/runs",
        "/runs/{run_id}",
        "/runs/{run_id}/stream",
        "/runs/{run_id}/resume",
        "/runs/{run_id}/cancel",
    ):
        assert path in paths


@pytest.mark.parametrize(
    ("names", "problem"),
    [
        (["no_such_module:SPEC"], "no_such_module"),
        (["tests.langgraph_runner.probes:missing"], "missing"),
        (["tests.langgraph_runner.probes:log_line"], "not a WorkflowSpec"),
    ],
)
def test_a_bad_extra_workflow_is_a_configuration_error(names: list[str], problem: str) -> None:
    with pytest.raises(WorkflowLoadError, match=problem) as refused:
        load_extra_workflows(names)

    assert refused.value.variable == "RUNNER_EXTRA_WORKFLOWS"


def test_two_workflows_with_one_id_are_refused(runner_settings: RunnerSettings) -> None:
    with pytest.raises(WorkflowLoadError, match="probe"):
        Catalog([PROBE, PROBE], build_deps(runner_settings))
