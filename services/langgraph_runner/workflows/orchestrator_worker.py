"""Orchestrator-worker: the orchestrator splits a task into sections, one worker per section runs
in parallel (``Send``), a reducer gathers their results, and the orchestrator assembles the
report.

The orchestrator asks the model for the sections unless the input lists them. Each worker
records when it started and finished, so parallelism is visible in the output.
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send

from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

MAX_WORKERS = 5

PROMPTS = {
    "plan": "You plan research for a trading desk. Split the task into short, distinct section "
    "titles, one per analyst. Answer in JSON.",
    "worker": "You are one analyst of a team. Write two or three plain sentences on your "
    "section of the task only.",
}

SectionTitle = Annotated[str, msgspec.Meta(min_length=3, max_length=80)]


class ResearchInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    task: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    sections: (
        Annotated[list[SectionTitle], msgspec.Meta(min_length=1, max_length=MAX_WORKERS)] | None
    ) = None
    """Skip planning and give one worker to each of these sections."""
    max_workers: Annotated[int, msgspec.Meta(ge=2, le=MAX_WORKERS)] = 3


class Plan(msgspec.Struct):
    sections: Annotated[list[SectionTitle], msgspec.Meta(min_length=2, max_length=MAX_WORKERS)]


class WorkerResult(TypedDict):
    index: int
    section: str
    text: str
    started_at: float
    finished_at: float


class ResearchState(TypedDict, total=False):
    task: str
    max_workers: int
    sections: list[str]
    completed: Annotated[list[WorkerResult], operator.add]
    report: str


class WorkerInput(TypedDict):
    task: str
    section: str
    index: int


def build(deps: WorkflowDeps) -> StateGraph[ResearchState, RunContext, Any, Any]:
    async def orchestrate(state: ResearchState, runtime: Runtime[RunContext]) -> ResearchState:
        if state.get("sections"):
            return {}
        plan = await deps.llm.structured(
            [("system", prompt_of(runtime, PROMPTS, "plan")), ("user", state["task"])],
            parameters_of(runtime),
            Plan,
            max_tokens=160,
        )
        unique = list(dict.fromkeys(s.strip() for s in plan.sections if s.strip()))
        return {"sections": unique[: state["max_workers"]]}

    def assign_workers(state: ResearchState) -> list[Send]:
        return [
            Send("worker", WorkerInput(task=state["task"], section=section, index=index))
            for index, section in enumerate(state["sections"])
        ]

    async def worker(state: WorkerInput, runtime: Runtime[RunContext]) -> ResearchState:
        started_at = time.time()
        text = await deps.llm.text(
            [
                ("system", prompt_of(runtime, PROMPTS, "worker")),
                ("user", f"Task: {state['task']}\nYour section: {state['section']}"),
            ],
            parameters_of(runtime),
            max_tokens=96,
        )
        result = WorkerResult(
            index=state["index"],
            section=state["section"],
            text=text,
            started_at=started_at,
            finished_at=time.time(),
        )
        return {"completed": [result]}

    def assemble(state: ResearchState) -> ResearchState:
        parts = _one_per_section(state["completed"])
        return {"report": "\n\n".join(f"## {p['section']}\n{p['text']}" for p in parts)}

    graph = StateGraph(ResearchState, context_schema=RunContext)
    graph.add_node("orchestrate", orchestrate, retry_policy=deps.retry)
    graph.add_node("worker", worker, retry_policy=deps.retry)
    graph.add_node("assemble", assemble)
    graph.add_edge(START, "orchestrate")
    graph.add_conditional_edges("orchestrate", assign_workers, ["worker"])
    graph.add_edge("worker", "assemble")
    graph.add_edge("assemble", END)
    return graph


def initial_state(research: ResearchInput, _: WorkflowDeps) -> dict[str, Any]:
    state: dict[str, Any] = {"task": research.task, "max_workers": research.max_workers}
    if research.sections:
        state["sections"] = list(dict.fromkeys(research.sections))
    return state


def _one_per_section(results: list[WorkerResult]) -> list[WorkerResult]:
    """In section order; should a section's worker have reported twice (a resumed run whose
    first result was recorded), the later report counts."""
    latest = {r["index"]: r for r in results}
    return [latest[i] for i in sorted(latest)]


def output(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "sections": state["sections"],
        "report": state.get("report", ""),
        "workers": _one_per_section(state.get("completed", [])),
    }


SPEC = WorkflowSpec(
    id="orchestrator_worker",
    title="Orchestrator-worker research",
    description="The orchestrator splits a task into sections (or takes them from the input), "
    "workers write each section in parallel through Send, a reducer gathers them, and the "
    "orchestrator assembles the report.",
    input_type=ResearchInput,
    build=build,
    initial_state=initial_state,
    output=output,
    prompts=PROMPTS,
)
