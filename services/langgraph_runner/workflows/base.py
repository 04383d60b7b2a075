"""What a workflow is to the runner: a graph builder, its input type, and how a final state
becomes the run's output."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from langgraph.graph import StateGraph
from langgraph.runtime import Runtime
from langgraph.types import RetryPolicy

from libs.common.schemas.json_schema import inline_schema
from libs.common.schemas.workflows import WorkflowParameters
from services.langgraph_runner.errors import InvalidWorkflowInput
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.market_data import MarketData


@dataclass(frozen=True)
class RunContext:
    """LangGraph's run context (``Runtime.context``): not checkpointed, so the runner rebuilds
    it from the run record whenever the run starts or resumes."""

    run_id: str
    parameters: WorkflowParameters = field(default_factory=WorkflowParameters)


@dataclass(frozen=True)
class WorkflowDeps:
    """What graphs are built with: shared clients and data, and the nodes' retry policy."""

    llm: LLMGateway
    market: MarketData
    retry: RetryPolicy


StateBuilder = Callable[[Any, WorkflowDeps], dict[str, Any]]
OutputBuilder = Callable[[dict[str, Any]], dict[str, Any]]
Scorer = Callable[[dict[str, Any]], float | None]
"""How good a successful run's output is (higher is better), or ``None``: not scored."""


@dataclass(frozen=True)
class WorkflowSpec:
    id: str
    title: str
    description: str
    input_type: type[msgspec.Struct]
    build: Callable[[WorkflowDeps], StateGraph[Any, Any, Any, Any]]
    initial_state: StateBuilder
    output: OutputBuilder
    prompts: Mapping[str, str] = field(default_factory=dict)
    score: Scorer | None = None
    """Scores a successful run's output: the run's ``score``, its outcome's in an A/B test."""

    @property
    def input_schema(self) -> dict[str, Any]:
        return inline_schema(self.input_type)

    def validate(self, payload: Mapping[str, Any], deps: WorkflowDeps) -> dict[str, Any]:
        """The graph's first state from a JSON payload; :class:`InvalidWorkflowInput` names
        what does not fit."""
        try:
            # Through JSON, so that a payload means the same over HTTP, Kafka and Python.
            typed = msgspec.json.decode(msgspec.json.encode(payload), type=self.input_type)
        except (msgspec.ValidationError, msgspec.EncodeError) as exc:
            raise InvalidWorkflowInput(f"input of {self.id!r}: {exc}") from exc
        return self.initial_state(typed, deps)


def parameters_of(runtime: Runtime[RunContext]) -> WorkflowParameters:
    # Studio (langgraph dev) runs graphs without the runner's context: defaults then.
    context = runtime.context
    return context.parameters if context is not None else WorkflowParameters()


def prompt_of(runtime: Runtime[RunContext], defaults: Mapping[str, str], name: str) -> str:
    return parameters_of(runtime).prompts.get(name, defaults[name])
