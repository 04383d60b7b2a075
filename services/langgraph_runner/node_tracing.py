"""One span per LangGraph node of a run, as a LangChain callback handler on the run's config.

A callback rather than a wrapper around each node: the workflows build their graphs with plain
functions whose signatures LangGraph inspects (``runtime``, ``config``), and a handler sees
every node of every graph without touching one.

LangGraph calls ``on_chain_start`` of a node inline in the task that drives the graph, just
before it starts the node's own task (which copies the context): the span attached there is
current in the node, so its model calls and HTTP requests become its children. The end comes
from yet another task, where nothing can be detached; so each node's span takes the graph's
context as its parent explicitly (not the previous node's, still attached), and the caller
iterates the graph inside ``trace.use_span`` (run_tasks.py), whose exit restores its context.
Only the graph's direct children are nodes: the runnables a node calls get no spans here.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from langchain_core.callbacks import AsyncCallbackHandler
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, StatusCode

_tracer = trace.get_tracer("pas.langgraph")


class NodeSpans(AsyncCallbackHandler):
    """Starts ``node <name>`` when a node starts, ends it when the node ends or fails."""

    run_inline = True  # awaited in the node's task: the span's context stays current there

    @property
    def ignore_llm(self) -> bool:
        return True

    @property
    def ignore_agent(self) -> bool:
        return True

    @property
    def ignore_retriever(self) -> bool:
        return True

    @property
    def ignore_custom_event(self) -> bool:
        return True

    def __init__(self, workflow_id: str, run_id: str) -> None:
        self._workflow_id = workflow_id
        self._run_id = run_id
        self._graphs: dict[UUID, otel_context.Context] = {}
        self._open: dict[UUID, Span] = {}

    async def on_chain_start(
        self,
        serialized: dict[str, Any],
        inputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if parent_run_id is None:
            # The graph itself: its children are the nodes, under the run's span.
            self._graphs[run_id] = otel_context.get_current()
            return
        node = (metadata or {}).get("langgraph_node")
        graph = self._graphs.get(parent_run_id)
        if graph is None or not node:
            return
        span = _tracer.start_span(
            context=graph,
            name=f"node {node}",
            attributes={
                "pas.workflow_id": self._workflow_id,
                "pas.run_id": self._run_id,
                "langgraph.node": str(node),
                "langgraph.step": int((metadata or {}).get("langgraph_step", 0)),
            },
        )
        otel_context.attach(trace.set_span_in_context(span))
        self._open[run_id] = span

    async def on_chain_end(
        self,
        outputs: dict[str, Any],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._close(run_id, None)

    async def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._close(run_id, error)

    def _close(self, run_id: UUID, error: BaseException | None) -> None:
        self._graphs.pop(run_id, None)
        span = self._open.pop(run_id, None)
        if span is None:
            return
        # An interrupt or a drain is how a node pauses, not a failure.
        if error is not None and not _is_pause(error):
            span.record_exception(error)
            span.set_status(StatusCode.ERROR, str(error))
        elif error is not None:
            span.set_attribute("langgraph.paused", type(error).__name__)
        span.end()


def _is_pause(error: BaseException) -> bool:
    return type(error).__name__ in {"GraphInterrupt", "GraphDrained", "ParentCommand"}
