"""A deterministic workflow for the runner's own behaviour (recovery, retries, streaming,
Kafka): three nodes ``a -> b -> c`` that log every start and end to a file the test reads.

Loaded into a runner with ``RUNNER_EXTRA_WORKFLOWS=tests.langgraph_runner.probes:PROBE``, the
way an operator adds a workflow of their own. Input:

- ``log``: the file each node appends ``{"run", "node", "event"}`` lines to;
- ``gate``: ``b`` waits until this file exists (a run to kill or watch mid-graph);
- ``transient_failures``: ``b`` raises ``ConnectionError`` on this many attempts first;
- ``broken``: ``c`` raises ``ValueError`` while this file exists (a permanent failure);
- ``value``: echoed in the output; a number is also the run's score;
- ``ask``: ``b`` asks the runner's LLM this (one call), its answer in the output;
- ``ask_person``: ``b`` interrupts the run with this question; the resume's answer is the output's
  ``answer``;
- ``ask_again``: with ``ask_person``, ``b`` then interrupts the run a second time with this
  question (a person asked to confirm); the output's ``answer`` is the last answer.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from services.langgraph_runner.workflows import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
)


class ProbeInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    log: str
    gate: str | None = None
    transient_failures: int = 0
    broken: str | None = None
    value: Any = None
    ask: str | None = None
    ask_person: str | None = None
    ask_again: str | None = None


class ProbeState(TypedDict, total=False):
    log: str
    gate: str | None
    transient_failures: int
    broken: str | None
    value: Any
    ask: str | None
    ask_person: str | None
    ask_again: str | None
    answer: str
    visited: list[str]


def log_line(path: str, run_id: str, node: str, event: str) -> None:
    with Path(path).open("a") as log:
        log.write(json.dumps({"run": run_id, "node": node, "event": event}) + "\n")


def read_log(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def count(path: Path, node: str, event: str, run_id: str | None = None) -> int:
    return sum(
        1
        for line in read_log(path)
        if line["node"] == node and line["event"] == event and run_id in (None, line["run"])
    )


def _run_id(runtime: Runtime[RunContext]) -> str:
    return runtime.context.run_id if runtime.context is not None else "studio"


def build(deps: WorkflowDeps) -> StateGraph[ProbeState, RunContext, Any, Any]:
    def a(state: ProbeState, runtime: Runtime[RunContext]) -> ProbeState:
        log_line(state["log"], _run_id(runtime), "a", "start")
        log_line(state["log"], _run_id(runtime), "a", "end")
        return {"visited": ["a"]}

    async def b(state: ProbeState, runtime: Runtime[RunContext]) -> ProbeState:
        run_id = _run_id(runtime)
        await asyncio.to_thread(log_line, state["log"], run_id, "b", "start")
        attempts = await asyncio.to_thread(count, Path(state["log"]), "b", "start", run_id)
        if attempts <= state["transient_failures"]:
            raise ConnectionError("the probe's backend is away (on purpose)")
        gate = state.get("gate")
        # The test (or a process it started) creates the file: polling is the only way to see it.
        while gate and not await asyncio.to_thread(Path(gate).exists):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        update: ProbeState = {"visited": [*state["visited"], "b"]}
        if question := state.get("ask"):
            turns = [("user", question)]
            update["answer"] = await deps.llm.text(turns, parameters_of(runtime), max_tokens=16)
        if question := state.get("ask_person"):
            update["answer"] = interrupt(question)
            if again := state.get("ask_again"):
                update["answer"] = interrupt(again)
        await asyncio.to_thread(log_line, state["log"], run_id, "b", "end")
        return update

    def c(state: ProbeState, runtime: Runtime[RunContext]) -> ProbeState:
        log_line(state["log"], _run_id(runtime), "c", "start")
        broken = state.get("broken")
        if broken and Path(broken).exists():
            raise ValueError("c is broken (on purpose)")
        log_line(state["log"], _run_id(runtime), "c", "end")
        return {"visited": [*state["visited"], "c"]}

    graph = StateGraph(ProbeState, context_schema=RunContext)
    graph.add_node("a", a, retry_policy=deps.retry)
    graph.add_node("b", b, retry_policy=deps.retry)
    graph.add_node("c", c, retry_policy=deps.retry)
    graph.add_edge(START, "a")
    graph.add_edge("a", "b")
    graph.add_edge("b", "c")
    graph.add_edge("c", END)
    return graph


def initial_state(probe: ProbeInput, _: WorkflowDeps) -> dict[str, Any]:
    state: dict[str, Any] = msgspec.to_builtins(probe)
    state["visited"] = []
    return state


def output(state: dict[str, Any]) -> dict[str, Any]:
    found = {"visited": state["visited"], "value": state.get("value")}
    if "answer" in state:
        found["answer"] = state["answer"]
    return found


def score(output: dict[str, Any]) -> float | None:
    value = output.get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


PROBE = WorkflowSpec(
    id="probe",
    title="Probe",
    description="Three logged steps, for the runner's tests.",
    input_type=ProbeInput,
    build=build,
    initial_state=initial_state,
    output=output,
    score=score,
)
PROBE_REFERENCE = "tests.langgraph_runner.probes:PROBE"
