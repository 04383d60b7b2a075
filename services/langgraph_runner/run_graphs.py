"""What a run asks of its workflow's graph besides streaming it (``run_tasks.py``): the config
it runs with (its thread, callbacks, limits), the input it starts again from, and which node a
failure came from.
"""

from __future__ import annotations

from contextlib import suppress
from typing import Any

from langchain_core.runnables import RunnableConfig

from libs.common.telemetry import tracing_enabled
from services.langgraph_runner.catalog import Workflow
from services.langgraph_runner.llm import RunUsageCallback
from services.langgraph_runner.node_tracing import NodeSpans
from services.langgraph_runner.store import RunRecord
from services.langgraph_runner.workflows import WorkflowDeps


def run_config(
    record: RunRecord, recursion_limit: int, meter: RunUsageCallback | None = None
) -> RunnableConfig:
    """The run's graph config: its thread (thread id = run id), its usage ``meter``, node
    spans when tracing is on, and what LangSmith-style tracers show."""
    run = record.run
    return {
        "configurable": {"thread_id": run.run_id},
        "recursion_limit": recursion_limit,
        "callbacks": [
            *([meter] if meter is not None else []),
            # One span per node, only when tracing is on (a callback costs every node).
            *([NodeSpans(run.workflow_id, run.run_id)] if tracing_enabled() else []),
        ],
        "run_name": run.workflow_id,
        "metadata": {
            "pas_run_id": run.run_id,
            "workflow_id": run.workflow_id,
            "workflow_run_id": run.workflow_run_id,
        },
    }


async def restart_input(
    workflow: Workflow, record: RunRecord, config: RunnableConfig, deps: WorkflowDeps
) -> Any:
    """``None`` (continue from the last checkpoint), or the first state if there is none
    (the run never got to its first step)."""
    snapshot = await workflow.graph.aget_state(config)
    if snapshot.created_at is None:
        return workflow.spec.validate(record.run.input, deps)
    return None


async def failure_reason(workflow: Workflow, config: RunnableConfig, exc: Exception) -> str:
    """``exc`` as the run's error, naming the node it came from when the checkpoint tells."""
    reason = f"{type(exc).__name__}: {exc}"
    with suppress(Exception):
        snapshot = await workflow.graph.aget_state(config)
        failed = [task.name for task in snapshot.tasks if task.error is not None]
        if failed:
            return f"node {failed[0]!r} failed: {reason}"
    return reason
