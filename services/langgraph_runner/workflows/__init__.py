"""The workflows PAS ships; each module holds one graph, its input type and its prompts."""

from services.langgraph_runner.workflows import (
    document_analysis,
    network,
    orchestrator_worker,
    supervisor,
    tool_agent,
)
from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

BUILTIN_WORKFLOWS: tuple[WorkflowSpec, ...] = (
    document_analysis.SPEC,
    orchestrator_worker.SPEC,
    supervisor.SPEC,
    network.SPEC,
    tool_agent.SPEC,
)

__all__ = [
    "BUILTIN_WORKFLOWS",
    "RunContext",
    "WorkflowDeps",
    "WorkflowSpec",
    "parameters_of",
    "prompt_of",
]
