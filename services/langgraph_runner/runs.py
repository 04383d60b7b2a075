"""Runs: the operations on them, each a run's record in the store and, while it needs a
process, an asyncio task here (``run_tasks.py``: streaming its graph on a thread of its own,
thread id = run id, its record saved at every step). Resumable after an interrupt, a failure or
a crash.

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
belongs to no process: any replica resumes it when asked. A resume and a cancel of a run with no
task here are written over the revision of the record they read (a compare-and-set in the
store): of a resume and a cancel at once, on one replica or two, exactly one holds; and a resume
read before the run moved on (resumed elsewhere, it asked a new question) is refused rather than
answering the new question. A cancel makes the run the cancelling runner's: it reports the end,
and no lease of the runner the run was interrupted on is left to take over.

Here (about 450 lines, as each checks a request against the store and the tasks): starting,
resuming, cancelling and reading runs, and what the lease keeper asks. Next door: each run's
task (``run_tasks.py``), keeping leases (``run_leases.py``), what a record becomes
(``run_records.py``), records written in order (``record_writes.py``), waiters and stream
listeners (``run_watch.py``), how long each run has run (``running_time.py``), and reporting how
runs ended (``outcomes.py``: a run is marked to be reported when it is created, see
``report_outcomes``, and each of its ends is announced to the outbox).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import Any

import msgspec
import structlog
from langgraph.types import Command

from libs.common.errors import PASError
from libs.common.schemas.workflows import (
    TERMINAL_STATUSES,
    RunStatus,
    RunUpdate,
    WorkflowParameters,
    WorkflowTriggered,
)
from services.langgraph_runner.catalog import Catalog
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
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.run_leases import LeaseKeeper
from services.langgraph_runner.run_records import (
    changed,
    checked_input,
    checked_metadata,
    experiment_unit,
    new_record,
    resume_value,
)
from services.langgraph_runner.run_tasks import RunTasks
from services.langgraph_runner.run_watch import RunWatch
from services.langgraph_runner.settings import RunnerSettings
from services.langgraph_runner.store import UNFINISHED_STATUSES, Claimed, RunRecord, RunStore

logger = structlog.get_logger("pas.runner")


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
        self._definitions = definitions
        self._metrics = metrics
        self._instance = settings.instance
        self._lease_renew_s = settings.lease_renew_s
        self._max_runs = settings.max_concurrent_runs
        self.max_wait_s = settings.max_wait_s
        """The longest a request with ``wait=true`` is held (``RUNNER_MAX_WAIT_S``)."""
        self._leases_opened: LeaseKeeper | None = None
        self._resuming: set[str] = set()
        """Runs taken in the store to be resumed here whose task is not launched yet."""
        self._watch = RunWatch(self.get)
        self._tasks = RunTasks(catalog, settings, metrics, self._watch)
        self._wants_report: Callable[[RunStatus], bool] = lambda _: False
        self._report_due: Callable[[], None] = lambda: None

    def attach(self, store: RunStore) -> None:
        """The run store, once the lifespan has opened it; the manager takes work from now on
        (again, if an earlier lifespan closed it)."""
        self._store_opened = store
        self._tasks.attach(store)
        self._leases_opened = LeaseKeeper(store, self._instance, self._lease_renew_s, self)

    @property
    def _store(self) -> RunStore:
        assert self._store_opened is not None, "RunManager.attach(store) was not called"
        return self._store_opened

    @property
    def _leases(self) -> LeaseKeeper:
        assert self._leases_opened is not None, "RunManager.attach(store) was not called"
        return self._leases_opened

    # -- reading ---------------------------------------------------------------------------

    @property
    def active(self) -> int:
        return self._tasks.active

    async def get(self, run_id: str) -> RunRecord:
        record = self._tasks.current(run_id) or await self._store.get(run_id)
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
        self._tasks.report_ends_to(due)

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
        record = new_record(
            workflow_id,
            payload,
            resolved.parameters,
            run_id=run_id,
            source="http",
            metadata={**(metadata or {}), **resolved.metadata},
            owner=self._instance,
            wants_report=self._wants_report,
        )
        await self._store.create(record)
        self._tasks.launch(record, first_state)
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
        record = new_record(
            event.workflow_id,
            event.payload,
            resolved.parameters,
            run_id=uuid.uuid4().hex,
            source=event.source,
            metadata={**event.metadata, **resolved.metadata},
            owner=self._instance,
            wants_report=self._wants_report,
            event=event,
            headers=headers,
        )
        stored, created = await self._store.create_for_event(record)
        if not created:  # the same event, started meanwhile (another replica, say)
            return self._seen_again(stored, event), False
        self._tasks.launch(record, first_state)
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
        record = await self._stored(run_id)
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
            graph_input = await self._tasks.restart_input(record, workflow)
        else:
            raise RunConflict(
                f"run {run_id!r} is {status}; only an interrupted or failed run can be resumed"
            )
        self._refuse_if_live(record)
        pending = msgspec.structs.replace(
            changed(record, status="pending", error=None, finished_at=None), owner=self._instance
        )
        # Taken in the store first, over the revision read: of two replicas resuming it at once
        # one gets it, a run cancelled meanwhile (here or on another replica) stays so, and a
        # run resumed and interrupted again meanwhile keeps its new question. Until its task is
        # launched, a cancel here is refused (see cancel).
        self._resuming.add(run_id)
        try:
            taken = await self._store.save(pending, from_revision=record.revision)
        finally:
            self._resuming.discard(run_id)
        if not taken:
            raise await self._not_taken(record, "resumed")
        self._tasks.launch(pending, graph_input)
        self._watch.announce(pending)
        return pending

    async def cancel(self, run_id: str) -> RunRecord:
        if run_id in self._resuming:
            # Its resume is stored, or about to be, and its task not started: a cancel written
            # now would be overrun by the task. Refused rather than waited for: a moment on.
            raise RunConflict(
                f"run {run_id!r} is being resumed right now; cancel it again once it runs"
            )
        if await self._tasks.cancel(run_id):
            return await self.get(run_id)
        record = await self._stored(run_id)
        status = record.run.status
        if status in TERMINAL_STATUSES:
            raise RunConflict(f"run {run_id!r} is already {status}")
        if status != "interrupted" and record.owner != self._instance:
            raise RunConflict(f"run {run_id!r} runs on runner {record.owner!r}; cancel it there")
        # No task here: written only over the revision read, so that a resume stored meanwhile
        # (on this runner or another) is not overwritten by a cancel it would then overrun.
        # This runner's from now on: it reports the end (holding the lease that takes while
        # the end is to be reported), not the runner the run was interrupted on, whose lease
        # would otherwise be taken over as an orphan's once that runner stops.
        cancelled = msgspec.structs.replace(
            self._tasks.ended(record, "cancelled", error="cancelled by request"),
            owner=self._instance,
        )
        if not await self._store.save(cancelled, from_revision=record.revision):
            raise await self._not_taken(record, "cancelled")
        self._watch.announce(cancelled)
        self._tasks.note_end(cancelled)
        return cancelled

    async def _stored(self, run_id: str) -> RunRecord:
        """The run as the store has it: what a resume or a cancel decides on and writes over
        (the revision it compares is the store's; a task's own copy does not keep it)."""
        record = await self._store.get(run_id)
        if record is None:
            raise RunNotFound(run_id)
        return record

    async def _not_taken(self, read: RunRecord, verb: str) -> RunConflict:
        """Why a resume or a cancel decided on ``read`` (the run as it read it) was not
        written."""
        run_id, status = read.run.run_id, read.run.status
        current = await self._store.get(run_id)
        if current is not None and current.run.status != status:
            return RunConflict(
                f"run {run_id!r} became {current.run.status} while being {verb}; not {verb}"
            )
        if current is not None and current.revision != read.revision:
            # The same status, written since: resumed elsewhere and stopped again there.
            asked = "it asked a new question" if status == "interrupted" else f"{status} again"
            return RunConflict(
                f"run {run_id!r} moved on while being {verb} (resumed on runner "
                f"{current.owner!r}, {asked}); not {verb}: read it again"
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
        return self._tasks.running()

    def room(self) -> int | None:
        return None if self._tasks.closing else max(0, self._max_runs - self.active)

    def lose(self, run_id: str) -> None:
        self._tasks.lose(run_id)

    async def resume_claimed(self, claimed: Claimed) -> bool:
        record = claimed.record
        run_id, workflow_id = record.run.run_id, record.run.workflow_id
        taken_over = claimed.previous_owner != self._instance
        if taken_over:
            self._metrics.runs_taken_over.labels(workflow_id).inc()
        if record.run.status not in UNFINISHED_STATUSES:
            self._report_due()  # it ended; its report is this runner's now
            return False
        if self._tasks.has_task(run_id):
            return False  # still running here: a renewal came late, the claim renewed it
        # Ours in the store, its task not started: a cancel now is refused (see cancel).
        self._resuming.add(run_id)
        try:
            workflow = self._catalog.get(workflow_id)
            graph_input = await self._tasks.restart_input(record, workflow)
        except (WorkflowNotFound, InvalidWorkflowInput) as exc:
            await self._tasks.finish(record, "error", error=f"cannot resume: {exc}")
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
        self._tasks.launch(record, graph_input)
        return True

    async def unreported(self) -> list[RunRecord]:
        """Ended runs this runner is to report (those it holds: one replica reports each)."""
        return await self._store.unreported(self._instance)

    async def mark_reported(self, record: RunRecord) -> None:
        """``record``'s outcome is reported; unless the run has moved on since (resumed)."""
        current = await self.get(record.run.run_id)
        if current.run.finished_at != record.run.finished_at or current.reported:
            return
        await self._tasks.save(msgspec.structs.replace(current, reported=True))
        self._watch.signal(record.run.run_id)

    async def close(self) -> None:
        """Stop every run at its next step boundary (``drain_timeout_s`` at most, then cancel);
        they stay ``running`` in the store, leased here until :meth:`release_leases`, and are
        resumed by the runner that takes them (another replica, or this one restarted)."""
        await self._tasks.drain()

    def _refuse_if_closing(self) -> None:
        if self._tasks.closing:
            raise RunnerClosing("the runner is shutting down and starts no new work")

    def _refuse_if_live(self, record: RunRecord) -> None:
        run_id = record.run.run_id
        if self._tasks.is_live(run_id) or run_id in self._resuming:
            raise RunConflict(f"run {record.run.run_id!r} is {record.run.status} already")
