"""How every run ended, reported once: one durable outbox, one channel chosen by configuration.

The choice (issue 14: outcomes of A/B runs started over REST never reached the version manager):

- **Kafka configured** (``KAFKA_BOOTSTRAP_SERVERS``): every run's end, started over REST or by
  a ``workflow.triggered`` event, is published on ``workflow-results`` as
  ``workflow.completed`` / ``workflow.failed`` (:func:`outcome_event`). The version manager
  reads an experiment's outcomes there (give it the same broker), the analytics collector
  counts the run there, a DAG finds its own by ``event_id``. A run started over REST has no
  trigger: its ``event_id`` and ``workflow_run_id`` are its run id.
- **No Kafka, ``VERSIONING_URL`` set**: runs that carry an experiment assignment (their
  metadata's ``experiment_id``, ``unit``, ``variant``) are posted to the version manager's
  ``POST /experiments/{id}/outcomes``.
- Neither: no one to report to; nothing is marked to be reported.

Never both for one runner: the version manager keeps the latest outcome it *receives* for a
run, and two channels could bring a failed run's first outcome after the one it was resumed to.

Once, durably. Whether a run is to be reported is decided when it is created and stored with
it (``RunRecord.report``); that it was reported (``RunRecord.reported``) is stored only after
the broker or the version manager acknowledged it. The outbox is every run that ended, is to
be reported and is not yet; it is read at start, on every end and every
``RUNNER_OUTBOX_INTERVAL_S``, so a run whose process died between its end and the report is
reported after the restart, and a run reported before is not reported again when its event is
redelivered or the runner restarts. A crash between the acknowledgement and the mark reports it
again: the version manager counts an outcome once per key (``workflow_run_id``, which is the
run id for REST runs) whichever channel brought it, and the analytics collector counts a run
once per ``workflow_run_id``. A failed run resumed to a new end is reported again under the
same key: its latest outcome is the one that counts.

An outcome the version manager refuses (a 4xx: the experiment stopped or is unknown, the unit
is assigned another variant) would be refused again: it is logged, counted in
``pas_runner_outcomes_reported_total{result="refused"}`` and marked, as the Kafka path sends
it to ``versioning-dlq``. An outage (connection, 5xx) leaves it in the outbox for the next try.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Protocol

import msgspec
import structlog
from aiokafka import AIOKafkaProducer

from libs.common.clients.versioning import VersioningClient, VersioningError
from libs.common.kafka.records import send_acknowledged, stop_producer
from libs.common.kafka.tracing import extract_context, produce_span
from libs.common.schemas.versioning import METADATA_EXPERIMENT_ID, ExperimentRunMetadata
from libs.common.schemas.workflows import (
    EVENT_COMPLETED,
    EVENT_FAILED,
    RunOutcome,
    RunStatus,
    WorkflowResult,
)
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.runs import RunManager
from services.langgraph_runner.store import RunRecord

logger = structlog.get_logger("pas.runner.outcomes")

_encode = msgspec.json.Encoder().encode

_ERROR_CHARS = 2000
_RECORD_HEADROOM_BYTES = 65_536
"""What a record takes beside its value: the key and the trigger's trace headers."""


def duration_ms(run: RunStatus) -> float:
    """How long the run ran (``RunStatus.running_ms``), else, for a run recorded before that
    was kept, from its first start to its end (waits and downtime included)."""
    if run.running_ms is not None:
        return round(run.running_ms, 1)
    assert run.finished_at is not None
    started = run.started_at or run.created_at
    return round(max(0.0, (run.finished_at - started).total_seconds() * 1000), 1)


def outcome_key(run: RunStatus) -> str:
    """What identifies the run's outcome to its readers: the trigger's ``workflow_run_id``, or
    the run id of a run started over REST."""
    return run.workflow_run_id or run.run_id


def outcome_event(record: RunRecord) -> WorkflowResult:
    """The ``workflow.completed`` / ``workflow.failed`` event of a run that ended."""
    run = record.run
    assert run.finished_at is not None
    status = run.status
    assert status in ("success", "error", "cancelled"), status
    return WorkflowResult(
        event_id=run.event_id or run.run_id,
        event_type=EVENT_COMPLETED if status == "success" else EVENT_FAILED,
        timestamp=datetime.now(UTC),
        workflow_id=run.workflow_id,
        workflow_run_id=outcome_key(run),
        payload=RunOutcome(
            run_id=run.run_id,
            status=status,
            output=run.output,
            error=run.error,
            steps=run.steps,
            started_at=run.started_at,
            finished_at=run.finished_at,
            duration_ms=duration_ms(run),
            parameters_version=run.parameters.version,
            usage=run.usage,
            cost=run.usage.cost_usd,
            score=run.score,
        ),
        metadata={**run.metadata, "runner_instance": record.owner},
    )


def fitted(event: WorkflowResult, max_bytes: int) -> bytes:
    """The event as a record's value: whole if it takes at most ``max_bytes``, else without its
    output (and its error cut short), which the run's record keeps. Sent whole, it would be
    refused at every try and stay in the outbox for good."""
    value = _encode(event)
    if len(value) <= max_bytes:
        return value
    outcome = event.payload
    error = outcome.error
    if error is not None and len(error) > _ERROR_CHARS:
        error = f"{error[:_ERROR_CHARS]}... ({len(error)} characters; the run has it whole)"
    slim = msgspec.structs.replace(
        outcome,
        output=None,
        error=error,
        omitted_output_bytes=None if outcome.output is None else len(_encode(outcome.output)),
    )
    logger.warning(
        "outcome too large for a record; published without its output",
        run_id=outcome.run_id,
        bytes=len(value),
        output_bytes=slim.omitted_output_bytes,
    )
    return _encode(msgspec.structs.replace(event, payload=slim))


class OutcomeChannel(Protocol):
    name: str
    batch: int
    """How many outcomes are reported together: sent at once, each marked once acknowledged.
    One at a time, each waited for its acknowledgement before the next (on Kafka also the
    producer's linger): about 130 a second, and a backlog after an outage, a restart or a
    takeover reported one by one (``bench/outcome_backlog.py``)."""

    def wants(self, run: RunStatus) -> bool:
        """Whether this run is to be reported (asked once, when it is created)."""
        ...

    async def open(self) -> None: ...

    async def report(self, record: RunRecord) -> str:
        """Deliver the outcome; returns ``ok``, ``refused`` (it would never be accepted) or
        ``skipped`` (nothing to deliver). Raises when it could not be delivered now (it stays
        in the outbox)."""
        ...

    async def close(self) -> None: ...


class ResultsTopic:
    """Every run's end on ``workflow-results``, keyed by its ``workflow_run_id``."""

    name = "kafka"
    batch = 256  # one produce batch, one acknowledgement a partition

    def __init__(
        self, bootstrap_servers: str, topic: str, metrics: RunnerMetrics, *, max_bytes: int
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._topic = topic
        self._metrics = metrics
        self._max_bytes = max_bytes
        self._producer: AIOKafkaProducer | None = None

    def wants(self, run: RunStatus) -> bool:
        return True

    async def open(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            linger_ms=5,
            max_request_size=max(1_048_576, self._max_bytes + _RECORD_HEADROOM_BYTES),
        )
        await self._producer.start()

    async def report(self, record: RunRecord) -> str:
        assert self._producer is not None, "ResultsTopic.open() was not awaited"
        event = outcome_event(record)
        trigger = [(k, v.encode()) for k, v in record.headers.items()]
        key = event.workflow_run_id.encode()
        # In the trigger's trace (reported later, from another task than the run's); with
        # tracing off the trigger's own headers go through as they came.
        with produce_span(
            self._topic, key=key, headers=trigger, context=extract_context(record.headers)
        ) as headers:
            value = fitted(event, self._max_bytes)
            await send_acknowledged(self._producer, self._topic, key, value, headers)
        self._metrics.results_published.labels(event.event_type).inc()
        return "ok"

    async def close(self) -> None:
        if self._producer is not None:
            await stop_producer(self._producer)
            self._producer = None


class VersioningOutcomes:
    """Runs of experiments posted to the version manager, keyed as on Kafka."""

    name = "versioning"
    batch = 16  # requests in flight, well within the client's pool

    def __init__(self, client: VersioningClient) -> None:
        self._client = client

    def wants(self, run: RunStatus) -> bool:
        return METADATA_EXPERIMENT_ID in run.metadata

    async def open(self) -> None:
        """The client belongs to the app (it also resolves definitions)."""

    async def report(self, record: RunRecord) -> str:
        run = record.run
        if run.status == "cancelled":
            return "skipped"  # no outcome of its variant (the version manager passes these over)
        try:
            assigned = msgspec.convert(run.metadata, ExperimentRunMetadata)
        except msgspec.ValidationError as exc:
            logger.warning("experiment fields unusable", run_id=run.run_id, error=str(exc))
            return "refused"
        try:
            await self._client.record_outcome(
                assigned.experiment_id,
                unit=assigned.unit,
                variant=assigned.variant,
                success=run.status == "success",
                latency_ms=duration_ms(run),
                cost=run.usage.cost_usd,
                score=run.score,
                outcome_id=outcome_key(run),
            )
        except VersioningError as exc:
            logger.warning(
                "outcome refused by the version manager",
                run_id=run.run_id,
                experiment_id=assigned.experiment_id,
                status=exc.status_code,
                reason=exc.detail,
            )
            return "refused"
        return "ok"

    async def close(self) -> None:
        pass


class OutcomeOutbox:
    def __init__(
        self,
        runs: RunManager,
        channel: OutcomeChannel,
        *,
        interval_s: float,
        metrics: RunnerMetrics,
    ) -> None:
        self._runs = runs
        self._channel = channel
        self._interval_s = interval_s
        self._metrics = metrics
        self._due = asyncio.Event()
        runs.report_outcomes(channel.wants, self._due.set)

    async def run(self, stop: asyncio.Event) -> None:
        """Report what is due until ``stop``, then once more (runs that ended while the
        runner drained them)."""
        await self._channel.open()
        try:
            while not stop.is_set():
                self._due.clear()
                try:
                    await self.flush()
                except Exception:
                    logger.exception("outcomes could not be reported; trying again")
                await _first(self._due, stop, timeout_s=self._interval_s)
            await self.flush()
        finally:
            await self._channel.close()

    async def flush(self) -> None:
        """Report what is due, the channel's ``batch`` at a time, then raise the first failure
        (what failed stays in the outbox). A batch that failed whole ends the flush (the
        channel is away; the next flush tries again); one that failed in part does not hold up
        the batches after it."""
        due = await self._runs.unreported()
        size = self._channel.batch
        failures: list[BaseException] = []
        for batch in (due[start : start + size] for start in range(0, len(due), size)):
            failed = await self._report_together(batch)
            failures += failed
            if len(failed) == len(batch):
                break
        if failures:
            raise failures[0]

    async def _report_together(self, records: list[RunRecord]) -> list[BaseException]:
        """Report ``records`` at once and mark those delivered; what failed."""
        results = await asyncio.gather(
            *(self._channel.report(record) for record in records), return_exceptions=True
        )
        delivered = [
            (record, result)
            for record, result in zip(records, results, strict=True)
            if isinstance(result, str)
        ]
        await asyncio.gather(*(self._runs.mark_reported(record) for record, _ in delivered))
        for record, result in delivered:
            self._metrics.outcomes_reported.labels(self._channel.name, result).inc()
            logger.info(
                "outcome reported",
                channel=self._channel.name,
                result=result,
                run_id=record.run.run_id,
                workflow_run_id=outcome_key(record.run),
                status=record.run.status,
            )
        return [failure for failure in results if isinstance(failure, BaseException)]


async def _first(*events: asyncio.Event, timeout_s: float) -> None:
    """Until one of ``events`` is set, or ``timeout_s`` has passed."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)
