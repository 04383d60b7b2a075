"""The catalog: every workflow by id, its graph compiled with the runner's checkpointer, and
what ``GET /workflows`` shows of it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import RetryPolicy

from libs.common.schemas.workflows import WorkflowInfo
from services.langgraph_runner.errors import WorkflowLoadError, WorkflowNotFound
from services.langgraph_runner.llm import LLMGateway, is_transient
from services.langgraph_runner.market_data import MarketData
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.workflows import BUILTIN_WORKFLOWS, WorkflowDeps, WorkflowSpec

CompiledGraph = CompiledStateGraph[Any, Any, Any, Any]
_INTERNAL_NODES = {"__start__", "__end__"}


def build_deps(settings: RunnerSettings, llm: LLMGateway | None = None) -> WorkflowDeps:
    return WorkflowDeps(
        llm=llm or LLMGateway(settings),
        market=MarketData.load(settings.market_data_path),
        retry=RetryPolicy(
            initial_interval=settings.node_retry_initial_s,
            max_interval=settings.node_retry_max_s,
            max_attempts=settings.node_max_attempts,
            retry_on=is_transient,
        ),
    )


def load_extra_workflows(names: Sequence[str]) -> list[WorkflowSpec]:
    """``module:attribute`` names of ``WorkflowSpec`` objects (``RUNNER_EXTRA_WORKFLOWS``)."""
    specs = []
    for name in names:
        module_name, _, attribute = name.partition(":")
        try:
            spec = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError, ValueError) as exc:
            raise WorkflowLoadError(f"cannot load {name!r}: {exc}") from exc
        if not isinstance(spec, WorkflowSpec):
            raise WorkflowLoadError(f"{name!r} is not a WorkflowSpec")
        specs.append(spec)
    return specs


@dataclass(frozen=True)
class Workflow:
    spec: WorkflowSpec
    graph: CompiledGraph
    info: WorkflowInfo


class Catalog:
    """Graphs are compiled once without a checkpointer (to describe them) and again with the
    runner's checkpointer when it is open (``bind``)."""

    def __init__(self, specs: Sequence[WorkflowSpec], deps: WorkflowDeps) -> None:
        self.deps = deps
        self._workflows: dict[str, Workflow] = {}
        for spec in specs:
            if spec.id in self._workflows:
                raise WorkflowLoadError(f"two workflows have the id {spec.id!r}")
            graph = spec.build(deps).compile(name=spec.id)
            self._workflows[spec.id] = Workflow(spec=spec, graph=graph, info=_describe(spec, graph))

    @classmethod
    def from_settings(cls, settings: RunnerSettings, deps: WorkflowDeps) -> Catalog:
        return cls([*BUILTIN_WORKFLOWS, *load_extra_workflows(settings.extra_workflows)], deps)

    def bind(self, checkpointer: BaseCheckpointSaver[str]) -> None:
        for workflow_id, workflow in self._workflows.items():
            graph = workflow.spec.build(self.deps).compile(
                checkpointer=checkpointer, name=workflow_id
            )
            self._workflows[workflow_id] = Workflow(
                spec=workflow.spec, graph=graph, info=workflow.info
            )

    def get(self, workflow_id: str) -> Workflow:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            raise WorkflowNotFound(workflow_id, sorted(self._workflows))
        return workflow

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._workflows

    def __iter__(self) -> Iterator[Workflow]:
        return iter(self._workflows.values())

    @property
    def ids(self) -> list[str]:
        return list(self._workflows)


def _describe(spec: WorkflowSpec, graph: CompiledGraph) -> WorkflowInfo:
    drawing = graph.get_graph()
    return WorkflowInfo(
        id=spec.id,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        prompts=dict(spec.prompts),
        nodes=[node for node in drawing.nodes if node not in _INTERNAL_NODES],
        mermaid=drawing.draw_mermaid(),
    )
