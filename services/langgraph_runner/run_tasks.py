"""Each run's task on this runner: launched with the graph's input, it waits for a slot, streams
the run's graph on a thread of its own (thread id = run id), saves the record at every node and
concludes it: ``success``, ``error`` or ``interrupted``; ``cancelled`` when asked; left as it is
when the runner drains (shutdown) or another replica took the run over. The operations that
launch tasks (start, resume, recovery) and answer for runs are the run manager's (``runs.py``);
what the graph is asked besides its stream is ``run_graphs.py``'s.

Just over 400 lines because launching, streaming and concluding a run share its task, its
current record, its drain control and its running time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Any, TypedDict, Unpack, cast

import msgspec
import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Interrupt
from opentelemetry import trace

from libs.common.kafka.tracing import extract_context
from libs.common.schemas.workflows import (
    TERMINAL_STATUSES,
    LLMUsage,
    PendingInterrupt,
    RunStatusName,
    RunUpdate,
)
from libs.common.telemetry import pas_span
from services.langgraph_runner.catalog import Catalog, Workflow
from services.langgraph_runner.json_values import json_value
from services.langgraph_runner.llm import LLMPrices, RunUsageCallback, attribute_llm_calls
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.record_writes import OrderedWrites
from services.langgraph_runner.run_graphs import failure_reason, restart_input, run_config
from services.langgraph_runner.run_records import changed, pending_interrupts, utcnow
from services.langgraph_runner.run_watch import RunWatch
from services.langgraph_runner.running_time import RunningTimes
from services.langgraph_runner.settings import Durability, RunnerSettings
from services.langgraph_runner.store import RunRecord, RunStore
from services.langgraph_runner.workflows import RunContext

logger = structlog.get_logger("pas.runner")

_INTERRUPT_KEY = "__interrupt__"


class RunEnd(TypedDict, total=False):
    """What a stopped run ends with, besides its status (:meth:`RunTasks.ended`)."""

    output: dict[str, Any] | None
    error: str | None
    interrupts: list[PendingInterrupt] | None
    usage: LLMUsage | None
    score: float | None


class RunTasks:
    def __init__(
        self,
        catalog: Catalog,
        settings: RunnerSettings,
        metrics: RunnerMetrics,
        watch: RunWatch,
    ) -> None:
        self._catalog = catalog
        self._metrics = metrics
        self._watch = watch
        self._durability: Durability = settings.durability
        self._recursion_limit = settings.recursion_limit
        self._drain_timeout_s = settings.drain_timeout_s
        self._prices = LLMPrices(settings.llm_prices)
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._writes_opened: OrderedWrites | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, RunRecord] = {}
        """The current record of every run with a task here; the store has the rest."""
        self._controls: dict[str, RunControl] = {}
        self._cancel_requested: set[str] = set()
        self._lost: set[str] = set()
        """Runs another replica took over while this one still ran them: stopped, unrecorded."""
        self._running = RunningTimes()
        self._report_due: Callable[[], None] = lambda: None
        self._closing = False

    def attach(self, store: RunStore) -> None:
        """Records are written to ``store`` from now on; tasks are launched (again)."""
        self._writes_opened = OrderedWrites(store)
        self._closing = False

    def report_ends_to(self, due: Callable[[], None]) -> None:
        """``due`` is called whenever a run whose outcome is to be reported ends."""
        self._report_due = due

    @property
    def _writes(self) -> OrderedWrites:
        assert self._writes_opened is not None, "RunTasks.attach(store) was not called"
        return self._writes_opened

    # -- what the run manager reads ---------------------------------------------------------

    @property
    def closing(self) -> bool:
        """Draining (see :meth:`drain`): a run launched now stays pending."""
        return self._closing

    @property
    def active(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    def running(self) -> list[str]:
        """The runs with a live task here."""
        return [run_id for run_id, task in self._tasks.items() if not task.done()]

    def has_task(self, run_id: str) -> bool:
        """A task here for the run, even one just ending."""
        return run_id in self._tasks

    def is_live(self, run_id: str) -> bool:
        task = self._tasks.get(run_id)
        return task is not None and not task.done()

    def current(self, run_id: str) -> RunRecord | None:
        """The run's record as its task here has it (newer than the store's), if it has one."""
        return self._records.get(run_id)

    # -- steering ---------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> bool:
        """Cancel the run's live task here and wait until it has recorded ``cancelled``;
        ``False`` if it has none."""
        task = self._tasks.get(run_id)
        if task is None or task.done():
            return False
        self._cancel_requested.add(run_id)
        task.cancel()
        await asyncio.wait([task])
        return True

    def lose(self, run_id: str) -> None:
        """Stop the run's task without recording anything: another replica runs it now."""
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            self._lost.add(run_id)
            task.cancel()

    async def drain(self) -> None:
        """Stop every run at its next step boundary (``drain_timeout_s`` at most, then cancel),
        and store the progress written in the background; a run launched from now on stays
        pending."""
        self._closing = True
        for control in list(self._controls.values()):
            control.request_drain("runner shutting down")
        tasks = [task for task in self._tasks.values() if not task.done()]
        if tasks:
            logger.info("draining runs", runs=len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self._drain_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # Progress written in the background is stored before the store closes.
        if self._writes_opened is not None:
            await self._writes_opened.drain()

    # -- the run's task ---------------------------------------------------------------------

    def launch(self, record: RunRecord, graph_input: Any) -> None:
        """Start the run's task (it waits for a slot) on ``graph_input``: the first state, a
        ``Command`` resuming it, or ``None`` to continue from its checkpoint."""
        run_id = record.run.run_id
        self._records[run_id] = record
        task = asyncio.create_task(self._execute(run_id, graph_input), name=f"run-{run_id}")
        self._tasks[run_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tasks.get(run_id) is done:
                del self._tasks[run_id]
                self._records.pop(run_id, None)
            self._metrics.active_runs.set(self.active)

        task.add_done_callback(forget)
        self._metrics.active_runs.set(self.active)

    async def _execute(self, run_id: str, graph_input: Any) -> None:
        attribute_llm_calls(self._records[run_id].run.workflow_id, run_id)
        try:
            async with self._slots:
                if self._closing:
                    return  # stays pending; resumed by whoever takes it over
                with self._run_span(run_id):
                    await self._run_graph(run_id, graph_input)
        except asyncio.CancelledError:
            if run_id in self._lost:
                self._lost.discard(run_id)
                return  # another replica runs it now
            if run_id not in self._cancel_requested:
                raise  # shutdown: the run stays running; whoever takes it over resumes it
            self._cancel_requested.discard(run_id)
            await self.finish(self._records[run_id], "cancelled", error="cancelled by request")
        except Exception:
            # _run_graph records the graph's own failures; this is the runner failing (the
            # store unreachable, say): the run stays as it was; its lease is no longer renewed,
            # so it is taken over (by this runner too) once the lease expires.
            logger.exception("run could not be recorded", run_id=run_id)
        finally:
            self._running.end(run_id)

    def _run_span(self, run_id: str) -> AbstractContextManager[Any]:
        """The run's span: a child of whatever span started it (an HTTP request, the bridge's
        consume span), else of the trace its trigger's headers carry (a Kafka event whose
        consumer made no span; a run resumed after a restart)."""
        run = self._records[run_id].run
        parent = None
        if not trace.get_current_span().get_span_context().is_valid and run.event_id:
            parent = extract_context(self._records[run_id].headers)
        return pas_span(
            f"workflow {run.workflow_id}",
            attributes={"pas.workflow_id": run.workflow_id, "pas.run_id": run_id},
            context=parent,
        )

    async def _run_graph(self, run_id: str, graph_input: Any) -> None:
        record = self._records[run_id]
        workflow = self._catalog.get(record.run.workflow_id)
        record = changed(
            record,
            status="running",
            started_at=record.run.started_at or utcnow(),
            attempts=record.run.attempts + 1,
            error=None,
            interrupts=[],
        )
        self._running.begin(record.run)
        await self.save(record, announce=True)
        source = "http" if record.run.event_id is None else "kafka"
        self._metrics.runs_started.labels(workflow.spec.id, source).inc()
        meter = RunUsageCallback(record.run.usage, self._prices)
        config = self._config(record, meter)
        control = RunControl()
        self._controls[run_id] = control
        # The final state and any interrupts come with the stream: no checkpoint read after.
        final: dict[str, Any] = {}
        interrupts: list[Interrupt] = []
        try:
            # With several stream modes, each chunk is (mode, data).
            stream = cast(
                AsyncIterator[tuple[str, Any]],
                workflow.graph.astream(
                    graph_input,
                    config,
                    context=RunContext(run_id=run_id, parameters=record.run.parameters),
                    stream_mode=["updates", "values"],
                    durability=self._durability,
                    control=control,
                ),
            )
            # Whatever the node spans attach in this task (node_tracing.py) is undone here.
            with trace.use_span(
                trace.get_current_span(),
                end_on_exit=False,
                record_exception=False,  # a drain is no failure; a failure is recorded below
                set_status_on_exception=False,
            ):
                async for mode, chunk in stream:
                    if mode == "values":
                        final = chunk
                        continue
                    for node, update in chunk.items():
                        if node == _INTERRUPT_KEY:
                            interrupts.extend(update)
                        else:
                            self._node_done(run_id, workflow, node, update, meter)
        except GraphDrained:
            await self.save(
                changed(
                    self._records[run_id], usage=meter.snapshot(), **self._running.so_far(run_id)
                )
            )
            logger.info("run drained; it resumes where it is taken over", run_id=run_id)
            return
        except Exception as exc:
            reason = await failure_reason(workflow, config, exc)
            logger.warning("run failed", run_id=run_id, workflow_id=workflow.spec.id, error=reason)
            await self.finish(self._records[run_id], "error", error=reason, usage=meter.snapshot())
            return
        finally:
            self._controls.pop(run_id, None)
            self._count_tokens(record.run.usage, meter.snapshot())
        await self._conclude(run_id, workflow, final, interrupts, meter.snapshot())

    def _node_done(
        self, run_id: str, workflow: Workflow, node: str, update: Any, meter: RunUsageCallback
    ) -> None:
        current = self._records[run_id].run
        record = changed(
            self._records[run_id],
            steps=current.steps + 1,
            path=[*current.path, node],
            usage=meter.snapshot(),
            **self._running.so_far(run_id),
        )
        self._save_soon(record)
        self._metrics.node_updates.labels(workflow.spec.id, node).inc()
        if self._watch.listened(run_id):
            self._watch.broadcast(
                RunUpdate(
                    run_id=run_id, node=node, step=record.run.steps, update=json_value(update)
                )
            )

    async def _conclude(
        self,
        run_id: str,
        workflow: Workflow,
        final: dict[str, Any],
        interrupts: list[Interrupt],
        usage: LLMUsage,
    ) -> None:
        record = self._records[run_id]
        if interrupts:
            pending = pending_interrupts(interrupts)
            await self.finish(record, "interrupted", interrupts=pending, usage=usage)
            return
        try:
            output = json_value(workflow.spec.output(final))
            score = workflow.spec.score(output) if workflow.spec.score else None
        except Exception as exc:
            logger.exception("output could not be built", run_id=run_id)
            await self.finish(
                record, "error", error=f"output: {type(exc).__name__}: {exc}", usage=usage
            )
            return
        await self.finish(record, "success", output=output, usage=usage, score=score)

    async def finish(
        self, record: RunRecord, status: RunStatusName, **end: Unpack[RunEnd]
    ) -> RunRecord:
        """Stop the run with ``status`` (see :meth:`ended`), stored and announced."""
        record = self.ended(record, status, **end)
        await self.save(record, announce=True)
        self.note_end(record)
        return record

    def ended(
        self,
        record: RunRecord,
        status: RunStatusName,
        *,
        output: dict[str, Any] | None = None,
        error: str | None = None,
        interrupts: list[PendingInterrupt] | None = None,
        usage: LLMUsage | None = None,
        score: float | None = None,
    ) -> RunRecord:
        """``record`` stopped with ``status`` (not saved)."""
        terminal = status in TERMINAL_STATUSES
        record = changed(
            record,
            status=status,
            output=output,
            error=error,
            interrupts=interrupts or [],
            finished_at=utcnow() if terminal else None,
            usage=usage or record.run.usage,
            score=score,
            **self._running.so_far(record.run.run_id),
        )
        if terminal:
            # A new outcome (a failed run may succeed when resumed) is reported again.
            record = msgspec.structs.replace(record, reported=False)
        return record

    def note_end(self, record: RunRecord) -> None:
        """Count, log and (when it is to be reported) announce a stop that is stored."""
        run = record.run
        self._metrics.runs_finished.labels(run.workflow_id, run.status).inc()
        if run.status in ("success", "error") and run.started_at is not None:
            seconds = (
                run.running_ms / 1000
                if run.running_ms is not None
                else ((run.finished_at or utcnow()) - run.started_at).total_seconds()
            )
            self._metrics.run_seconds.labels(run.workflow_id).observe(seconds)
        logger.info(
            "run stopped",
            run_id=run.run_id,
            workflow_id=run.workflow_id,
            status=run.status,
            steps=run.steps,
            error=run.error,
        )
        if run.status in TERMINAL_STATUSES and record.report:
            self._report_due()

    # -- helpers ----------------------------------------------------------------------------

    def _config(self, record: RunRecord, meter: RunUsageCallback | None = None) -> RunnableConfig:
        return run_config(record, self._recursion_limit, meter)

    async def restart_input(self, record: RunRecord, workflow: Workflow) -> Any:
        """``None`` (continue from the last checkpoint), or the first state if there is none
        (the run never got to its first step)."""
        return await restart_input(workflow, record, self._config(record), self._catalog.deps)

    async def save(self, record: RunRecord, *, announce: bool = False) -> None:
        """Write ``record`` and wait until it (and every earlier write of the run) is stored."""
        self._remember(record)
        await self._writes.save(record)
        if announce:
            self._watch.announce(record)

    def _save_soon(self, record: RunRecord) -> None:
        """Write ``record`` without waiting: a node's progress does not hold up the next node."""
        self._remember(record)
        self._writes.save_soon(record)

    def _remember(self, record: RunRecord) -> None:
        if record.run.run_id in self._records:
            self._records[record.run.run_id] = record

    def _count_tokens(self, before: LLMUsage, after: LLMUsage) -> None:
        self._metrics.llm_tokens.labels("prompt").inc(after.prompt_tokens - before.prompt_tokens)
        self._metrics.llm_tokens.labels("completion").inc(
            after.completion_tokens - before.completion_tokens
        )
