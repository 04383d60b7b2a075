"""Runs: each one an asyncio task streaming its graph on a thread of its own (thread id = run
id), its record saved at every step, resumable after an interrupt, a failure or a crash.

Statuses: ``pending`` (waiting for a slot) -> ``running`` -> ``success`` | ``error`` |
``interrupted`` | ``cancelled``. An interrupted run continues with ``resume`` and an answer; a
failed one with ``resume`` and no answer, from its last checkpoint. A run still ``pending`` or
``running`` when the process stops (crash or shutdown) is resumed from its checkpoint (LangGraph
loads it, so completed nodes do not run again) by whichever runner takes it: replicas share
the store, and each run that needs a process is leased to one (``store.py``). This runner
renews its leases every ``lease_renew_s`` and takes over runs whose lease expired
(:meth:`RunManager.recover` at start, then in the background): a replica killed mid-run has its
runs resumed by another within ``lease_ttl_s`` + ``lease_renew_s``; one shut down gracefully
drains and releases them, so they are taken at once. An interrupted run waits for a person and
belongs to no process: any replica resumes it when asked.

Over 400 lines because starting, resuming, executing and concluding share each run's task,
record and control. The jobs that stand apart live next door: keeping leases
(``run_leases.py``), what a record becomes (``run_records.py``), records written in order
(``record_writes.py``), waiters and stream listeners (``run_watch.py``), how long each run has
run (``running_time.py``), and reporting how runs ended (``outcomes.py``: a run is marked to be
reported when it is created, see ``report_outcomes``, and each of its ends is announced to the
outbox).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any, cast

import msgspec
import structlog
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.runtime import RunControl
from langgraph.types import Command, Interrupt
from opentelemetry import trace

from libs.common.errors import PASError
from libs.common.kafka.tracing import extract_context
from libs.common.schemas.workflows import (
    TERMINAL_STATUSES,
    LLMUsage,
    PendingInterrupt,
    RunStatus,
    RunStatusName,
    RunUpdate,
    WorkflowParameters,
    WorkflowTriggered,
)
from libs.common.telemetry import pas_span, tracing_enabled
from services.langgraph_runner.catalog import Catalog, Workflow
from services.langgraph_runner.definitions import (
    DefinitionSource,
    ResolvedDefinition,
    refuse_inapplicable,
)
from services.langgraph_runner.errors import (
    InvalidWorkflowInput,
    RunConflict,
    RunNotFound,
    WorkflowNotFound,
)
from services.langgraph_runner.json_values import json_value
from services.langgraph_runner.llm import LLMPrices, RunUsageCallback, attribute_llm_calls
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.node_tracing import NodeSpans
from services.langgraph_runner.record_writes import OrderedWrites
from services.langgraph_runner.run_leases import LeaseKeeper
from services.langgraph_runner.run_records import (
    changed,
    checked_input,
    checked_metadata,
    experiment_unit,
    pending_interrupts,
    resume_value,
    utcnow,
)
from services.langgraph_runner.run_watch import RunWatch
from services.langgraph_runner.running_time import RunningTimes
from services.langgraph_runner.settings import Durability, RunnerSettings
from services.langgraph_runner.store import UNFINISHED_STATUSES, Claimed, RunRecord, RunStore
from services.langgraph_runner.workflows import RunContext

logger = structlog.get_logger("pas.runner")

_INTERRUPT_KEY = "__interrupt__"


class RunnerClosing(PASError):
    """The runner is shutting down and starts nothing new; retry on another or after restart."""

    status_code = 503


class RunManager:
    def __init__(
        self,
        catalog: Catalog,
        settings: RunnerSettings,
        definitions: DefinitionSource,
        metrics: RunnerMetrics,
    ) -> None:
        self._catalog = catalog
        self._store_opened: RunStore | None = None
        self._writes_opened: OrderedWrites | None = None
        self._definitions = definitions
        self._metrics = metrics
        self._instance = settings.instance
        self._durability: Durability = settings.durability
        self._recursion_limit = settings.recursion_limit
        self._drain_timeout_s = settings.drain_timeout_s
        self._lease_renew_s = settings.lease_renew_s
        self._max_runs = settings.max_concurrent_runs
        self.max_wait_s = settings.max_wait_s
        """The longest a request with ``wait=true`` is held (``RUNNER_MAX_WAIT_S``)."""
        self._leases_opened: LeaseKeeper | None = None
        self._prices = LLMPrices(settings.llm_prices)
        self._slots = asyncio.Semaphore(settings.max_concurrent_runs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._records: dict[str, RunRecord] = {}
        """The current record of every run with a task here; the store has the rest."""
        self._controls: dict[str, RunControl] = {}
        self._cancel_requested: set[str] = set()
        self._lost: set[str] = set()
        """Runs another replica took over while this one still ran them: stopped, unrecorded."""
        self._resuming: set[str] = set()
        self._running = RunningTimes()
        self._watch = RunWatch(self.get)
        self._wants_report: Callable[[RunStatus], bool] = lambda _: False
        self._report_due: Callable[[], None] = lambda: None
        self._closing = False

    def attach(self, store: RunStore) -> None:
        """The run store, once the lifespan has opened it; the manager takes work from now on
        (again, if an earlier lifespan closed it)."""
        self._store_opened = store
        self._writes_opened = OrderedWrites(store)
        self._leases_opened = LeaseKeeper(store, self._instance, self._lease_renew_s, self)
        self._closing = False

    @property
    def _store(self) -> RunStore:
        assert self._store_opened is not None, "RunManager.attach(store) was not called"
        return self._store_opened

    @property
    def _leases(self) -> LeaseKeeper:
        assert self._leases_opened is not None, "RunManager.attach(store) was not called"
        return self._leases_opened

    @property
    def _writes(self) -> OrderedWrites:
        assert self._writes_opened is not None, "RunManager.attach(store) was not called"
        return self._writes_opened

    # -- reading ---------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return sum(1 for task in self._tasks.values() if not task.done())

    async def get(self, run_id: str) -> RunRecord:
        record = self._records.get(run_id) or await self._store.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def recent(
        self, *, workflow_id: str | None = None, status: str | None = None, limit: int = 50
    ) -> list[RunRecord]:
        return await self._store.recent(workflow_id=workflow_id, status=status, limit=limit)

    async def wait(
        self, run_id: str, timeout_s: float | None = None, *, reported: bool = False
    ) -> RunRecord:
        """The run once settled (see :func:`is_settled`), or as it is when ``timeout_s`` ends."""
        return await self._watch.wait(run_id, timeout_s, reported=reported)

    def updates(self, run_id: str) -> AsyncGenerator[RunUpdate, None]:
        """The run's status now, then every node update and status change until it settles."""
        return self._watch.updates(run_id)

    # -- starting and steering -------------------------------------------------------------

    def report_outcomes(self, wants: Callable[[RunStatus], bool], due: Callable[[], None]) -> None:
        """Runs that ``wants`` (asked as each is created) are to be reported; ``due`` is called
        whenever one of them ends."""
        self._wants_report = wants
        self._report_due = due

    async def start(
        self,
        workflow_id: str,
        payload: Mapping[str, Any],
        *,
        run_id: str | None = None,
        parameters: WorkflowParameters | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Validate and start a run (HTTP); it runs in the background."""
        self._refuse_if_closing()
        workflow = self._catalog.get(workflow_id)
        first_state = workflow.spec.validate(payload, self._catalog.deps)
        checked_input(payload)
        metadata = checked_metadata(metadata)
        if run_id is not None and await self._store.get(run_id) is not None:
            # Known without the version manager: not asked (a round trip, a 503 while it is
            # away) for a run that is refused anyway. The store refuses a race to the id.
            raise RunConflict(f"run id {run_id!r} is taken")
        run_id = run_id or uuid.uuid4().hex
        unit = experiment_unit(metadata, run_id)
        resolved = await self._definitions.resolve(workflow_id, parameters, unit)
        self._refuse_inapplicable(workflow_id, resolved, requested=parameters is not None)
        record = self._new_record(
            workflow_id,
            payload,
            resolved.parameters,
            run_id=run_id,
            source="http",
            metadata={**(metadata or {}), **resolved.metadata},
        )
        await self._store.create(record)
        self._launch(record, first_state)
        logger.info("run accepted", run_id=run_id, workflow_id=workflow_id, source="http")
        return record

    def _refuse_inapplicable(
        self, workflow_id: str, resolved: ResolvedDefinition, *, requested: bool
    ) -> None:
        parameters = resolved.parameters
        problem = self._catalog.deps.llm.cannot_apply(parameters)
        refuse_inapplicable(workflow_id, parameters, problem, requested=requested)

    async def start_for_event(
        self, event: WorkflowTriggered, headers: Mapping[str, str] | None = None
    ) -> tuple[RunRecord, bool]:
        """Start the run an event asks for, once: (its run, whether it was started now)."""
        self._refuse_if_closing()
        workflow = self._catalog.get(event.workflow_id)
        first_state = workflow.spec.validate(event.payload, self._catalog.deps)
        checked_input(event.payload)
        checked_metadata(event.metadata)
        # An event seen before has its run: answered without the version manager, which
        # would cost a round trip and, while it is away, hold the event in its slot.
        seen = await self._store.for_event(event.event_id)
        if seen is not None:
            return self._seen_again(seen, event), False
        unit = experiment_unit(event.metadata, event.workflow_run_id)
        resolved = await self._definitions.resolve(event.workflow_id, None, unit)
        self._refuse_inapplicable(event.workflow_id, resolved, requested=False)
        record = self._new_record(
            event.workflow_id,
            event.payload,
            resolved.parameters,
            run_id=uuid.uuid4().hex,
            source=event.source,
            metadata={**event.metadata, **resolved.metadata},
            event=event,
            headers=headers,
        )
        stored, created = await self._store.create_for_event(record)
        if not created:  # the same event, started meanwhile (another replica, say)
            return self._seen_again(stored, event), False
        self._launch(record, first_state)
        logger.info(
            "run accepted",
            run_id=record.run.run_id,
            workflow_id=event.workflow_id,
            event_id=event.event_id,
            workflow_run_id=event.workflow_run_id,
        )
        return record, True

    @staticmethod
    def _seen_again(stored: RunRecord, event: WorkflowTriggered) -> RunRecord:
        if stored.run.workflow_id != event.workflow_id:
            logger.warning(
                "event id seen before with another workflow; not run again",
                event_id=event.event_id,
                first_workflow=stored.run.workflow_id,
                workflow_id=event.workflow_id,
            )
        return stored

    async def resume(
        self, run_id: str, answer: Any = msgspec.UNSET, interrupt_id: str | None = None
    ) -> RunRecord:
        """Continue an interrupted run with ``answer``, or a failed one from its checkpoint."""
        self._refuse_if_closing()
        record = await self.get(run_id)
        self._refuse_if_live(record)
        workflow = self._catalog.get(record.run.workflow_id)
        status = record.run.status
        graph_input: Any
        if status == "interrupted":
            graph_input = Command(resume=resume_value(record, answer, interrupt_id))
        elif status == "error":
            if answer is not msgspec.UNSET:
                raise InvalidWorkflowInput(
                    "resume: a failed run continues from its last checkpoint; send no answer"
                )
            graph_input = await self._restart_input(record, workflow)
        else:
            raise RunConflict(
                f"run {run_id!r} is {status}; only an interrupted or failed run can be resumed"
            )
        self._refuse_if_live(record)
        record = msgspec.structs.replace(
            changed(record, status="pending", error=None, finished_at=None), owner=self._instance
        )
        # Taken in the store first, from the status read: of two replicas resuming it at once
        # one gets it, and a run cancelled meanwhile (here or on another replica) stays so.
        # Until its task is launched, a cancel here is refused (see cancel).
        self._resuming.add(run_id)
        try:
            taken = await self._store.save(record, from_status=status)
        finally:
            self._resuming.discard(run_id)
        if not taken:
            raise await self._not_taken(run_id, status, "resumed")
        self._launch(record, graph_input)
        self._watch.announce(record)
        return record

    async def cancel(self, run_id: str) -> RunRecord:
        record = await self.get(run_id)
        if record.run.status in TERMINAL_STATUSES:
            raise RunConflict(f"run {run_id!r} is already {record.run.status}")
        if run_id in self._resuming:
            # Its resume is stored, or about to be, and its task not started: a cancel written
            # now would be overrun by the task. Refused rather than waited for: a moment on.
            raise RunConflict(
                f"run {run_id!r} is being resumed right now; cancel it again once it runs"
            )
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            self._cancel_requested.add(run_id)
            task.cancel()
            await asyncio.wait([task])
            return await self.get(run_id)
        if record.run.status != "interrupted" and record.owner != self._instance:
            raise RunConflict(f"run {run_id!r} runs on runner {record.owner!r}; cancel it there")
        # No task here: written only over the status read, so that a resume stored meanwhile
        # (on this runner or another) is not overwritten by a cancel it would then overrun.
        status = record.run.status
        cancelled = self._ended(record, "cancelled", error="cancelled by request")
        if not await self._store.save(cancelled, from_status=status):
            raise await self._not_taken(run_id, status, "cancelled")
        self._watch.announce(cancelled)
        self._note_end(cancelled)
        return cancelled

    async def _not_taken(self, run_id: str, read: RunStatusName, verb: str) -> RunConflict:
        """Why a resume or a cancel of ``run_id`` (read as ``read``) was not written."""
        current = await self._store.get(run_id)
        if current is not None and current.run.status != read:
            return RunConflict(
                f"run {run_id!r} became {current.run.status} while being {verb}; not {verb}"
            )
        return RunConflict(
            f"run {run_id!r} is held by another runner (resumed there, or its end not yet "
            f"reported); not {verb}, try again shortly"
        )

    async def recover(self) -> int:
        """At start: resume the runs leased to this runner's name (it stopped before) and any
        whose lease expired; then keep leases in the background (renew this runner's, take
        over expired ones) until :meth:`release_leases`. The number of runs resumed now."""
        resumed = await self._leases.take_over(own_too=True)
        self._leases.keep()
        return resumed

    async def release_leases(self) -> None:
        """Stop renewing and let go of every lease: after :meth:`close` and the last report,
        so that another replica takes this one's unfinished runs at once."""
        await self._leases.release()

    # -- what the lease keeper asks (run_leases.LeasedRuns) ---------------------------------

    def running(self) -> list[str]:
        return [run_id for run_id, task in self._tasks.items() if not task.done()]

    def room(self) -> int | None:
        return None if self._closing else max(0, self._max_runs - self.active)

    def lose(self, run_id: str) -> None:
        task = self._tasks.get(run_id)
        if task is not None and not task.done():
            self._lost.add(run_id)
            task.cancel()

    async def resume_claimed(self, claimed: Claimed) -> bool:
        record = claimed.record
        run_id, workflow_id = record.run.run_id, record.run.workflow_id
        taken_over = claimed.previous_owner != self._instance
        if taken_over:
            self._metrics.runs_taken_over.labels(workflow_id).inc()
        if record.run.status not in UNFINISHED_STATUSES:
            self._report_due()  # it ended; its report is this runner's now
            return False
        if run_id in self._tasks:
            return False  # still running here: a renewal came late, the claim renewed it
        # Ours in the store, its task not started: a cancel now is refused (see cancel).
        self._resuming.add(run_id)
        try:
            workflow = self._catalog.get(workflow_id)
            graph_input = await self._restart_input(record, workflow)
        except (WorkflowNotFound, InvalidWorkflowInput) as exc:
            await self._finish(record, "error", error=f"cannot resume: {exc}")
            return False
        finally:
            self._resuming.discard(run_id)
        logger.info(
            "resuming run taken over" if taken_over else "resuming run after restart",
            run_id=run_id,
            workflow_id=workflow_id,
            previous_owner=claimed.previous_owner,
            steps=record.run.steps,
            from_checkpoint=graph_input is None,
        )
        self._metrics.runs_recovered.labels(workflow_id).inc()
        self._launch(record, graph_input)
        return True

    async def unreported(self) -> list[RunRecord]:
        """Ended runs this runner is to report (those it holds: one replica reports each)."""
        return await self._store.unreported(self._instance)

    async def mark_reported(self, record: RunRecord) -> None:
        """``record``'s outcome is reported; unless the run has moved on since (resumed)."""
        current = await self.get(record.run.run_id)
        if current.run.finished_at != record.run.finished_at or current.reported:
            return
        await self._save(msgspec.structs.replace(current, reported=True))
        self._watch.signal(record.run.run_id)

    async def close(self) -> None:
        """Stop every run at its next step boundary (``drain_timeout_s`` at most, then cancel);
        they stay ``running`` in the store, leased here until :meth:`release_leases`, and are
        resumed by the runner that takes them (another replica, or this one restarted)."""
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

    # -- the run's task --------------------------------------------------------------------

    def _launch(self, record: RunRecord, graph_input: Any) -> None:
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
            await self._finish(self._records[run_id], "cancelled", error="cancelled by request")
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
        await self._save(record, announce=True)
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
            await self._save(
                changed(
                    self._records[run_id], usage=meter.snapshot(), **self._running.so_far(run_id)
                )
            )
            logger.info("run drained; it resumes where it is taken over", run_id=run_id)
            return
        except Exception as exc:
            reason = await self._failure_reason(workflow, config, exc)
            logger.warning("run failed", run_id=run_id, workflow_id=workflow.spec.id, error=reason)
            await self._finish(self._records[run_id], "error", error=reason, usage=meter.snapshot())
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
            await self._finish(record, "interrupted", interrupts=pending, usage=usage)
            return
        try:
            output = json_value(workflow.spec.output(final))
            score = workflow.spec.score(output) if workflow.spec.score else None
        except Exception as exc:
            logger.exception("output could not be built", run_id=run_id)
            await self._finish(
                record, "error", error=f"output: {type(exc).__name__}: {exc}", usage=usage
            )
            return
        await self._finish(record, "success", output=output, usage=usage, score=score)

    async def _finish(
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
        record = self._ended(
            record,
            status,
            output=output,
            error=error,
            interrupts=interrupts,
            usage=usage,
            score=score,
        )
        await self._save(record, announce=True)
        self._note_end(record)
        return record

    def _ended(
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

    def _note_end(self, record: RunRecord) -> None:
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

    # -- helpers ---------------------------------------------------------------------------

    def _new_record(
        self,
        workflow_id: str,
        payload: Mapping[str, Any],
        parameters: WorkflowParameters,
        *,
        run_id: str,
        source: str,
        metadata: Mapping[str, Any] | None,
        event: WorkflowTriggered | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> RunRecord:
        now = utcnow()
        run = RunStatus(
            run_id=run_id,
            workflow_id=workflow_id,
            status="pending",
            input=dict(payload),
            created_at=now,
            updated_at=now,
            source=source,
            event_id=event.event_id if event else None,
            workflow_run_id=event.workflow_run_id if event else None,
            parameters=parameters,
            metadata=dict(metadata or {}),
            running_ms=0.0,
        )
        return RunRecord(
            run=run,
            owner=self._instance,
            report=self._wants_report(run),
            headers=dict(headers or {}),
        )

    def _config(self, record: RunRecord, meter: RunUsageCallback | None = None) -> RunnableConfig:
        run = record.run
        return {
            "configurable": {"thread_id": run.run_id},
            "recursion_limit": self._recursion_limit,
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

    async def _restart_input(self, record: RunRecord, workflow: Workflow) -> Any:
        """``None`` (continue from the last checkpoint), or the first state if there is none
        (the run never got to its first step)."""
        snapshot = await workflow.graph.aget_state(self._config(record))
        if snapshot.created_at is None:
            return workflow.spec.validate(record.run.input, self._catalog.deps)
        return None

    async def _failure_reason(
        self, workflow: Workflow, config: RunnableConfig, exc: Exception
    ) -> str:
        reason = f"{type(exc).__name__}: {exc}"
        with suppress(Exception):
            snapshot = await workflow.graph.aget_state(config)
            failed = [task.name for task in snapshot.tasks if task.error is not None]
            if failed:
                return f"node {failed[0]!r} failed: {reason}"
        return reason

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise RunnerClosing("the runner is shutting down and starts no new work")

    def _refuse_if_live(self, record: RunRecord) -> None:
        task = self._tasks.get(record.run.run_id)
        if (task is not None and not task.done()) or record.run.run_id in self._resuming:
            raise RunConflict(f"run {record.run.run_id!r} is {record.run.status} already")

    async def _save(self, record: RunRecord, *, announce: bool = False) -> None:
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
