"""What each consumed topic carries, read into usage events and workflow outcomes.

- ``llm-usage``: :class:`UsageEvent` as published by the router and the LLM services.
- ``workflow-results``: the runner's ``workflow.completed`` / ``workflow.failed`` events (the
  spec's envelope: ``event_id``, ``event_type``, ``timestamp``, ``workflow_id``,
  ``workflow_run_id``, ``payload``), read leniently: the outcome's status, error, end and
  duration come from the ``payload`` (the runner's ``RunOutcome``) when it has them, else from
  the envelope (``duration_ms``, ``duration_s``, ``started_at``/``completed_at``,
  ``timestamp``). Other event types, and cancelled runs, are skipped.
- ``llm-results``: the Kafka processor's results, one successful run of
  ``kafka_llm_processor.<task>`` each, keyed by the source offset (a redelivered document gives
  the same key, so it counts once).
- the processor's DLQ: documents that failed, one failed run each, keyed the same way.

A record that does not decode raises :class:`Undecodable` with the reason (it goes to the DLQ).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, cast, get_args

import msgspec

from libs.common.schemas.documents import (
    DeadLetter,
    DocumentResult,
    Task,
    processor_run_id,
    processor_workflow_id,
)
from libs.common.schemas.nul_escape import may_hold_nul
from libs.common.schemas.usage import (
    MAX_REASON_CHARS,
    UsageEvent,
    WorkflowRun,
    storable_text,
    storable_text_or_none,
)
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable
from services.analytics.nul_free import NulFreeUsage

TopicRole = Literal["usage", "workflow_results", "llm_results", "documents_dlq"]
_OUTCOMES = {"workflow.completed": "success", "workflow.failed": "error"}
_RUN_STATUSES = {"success": "success", "error": "error", "failed": "error"}


class Undecodable(Exception):
    """The record is not what its topic carries; ``kind`` names how."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind


class Skipped:
    """A valid record that is not an outcome (another workflow event type)."""


SKIPPED = Skipped()


class _Outcome(msgspec.Struct, kw_only=True):
    """The fields of a workflow result the collector reads; others are ignored."""

    status: str | None = None
    error: Any = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: float | None = None
    duration_s: float | None = None


class _WorkflowResultEvent(_Outcome, kw_only=True):
    event_type: str
    workflow_id: str | None = None
    workflow_run_id: str | None = None
    event_id: str | None = None
    timestamp: datetime | None = None
    payload: Any = None


class _DocumentTask(msgspec.Struct):
    task: str = "unknown"


_decode_usage = msgspec.json.Decoder(UsageEvent).decode
_decode_nul_free_usage = msgspec.json.Decoder(NulFreeUsage).decode
_decode_workflow_event = msgspec.json.Decoder(_WorkflowResultEvent).decode
_decode_result = msgspec.json.Decoder(DocumentResult).decode
_decode_letter = msgspec.json.Decoder(DeadLetter).decode
_decode_task = msgspec.json.Decoder(_DocumentTask).decode


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def decode(role: TopicRole, value: bytes | None, record_time: datetime) -> Any:
    """A :class:`UsageEvent`, a :class:`WorkflowRun`, or :data:`SKIPPED`.

    ``record_time`` is the record's Kafka timestamp: a workflow result without a time of its
    own ended then."""
    if role == "usage":
        return decode_usage(value)
    if value is None:
        raise Undecodable("empty", "the record has no value")
    try:
        if role == "workflow_results":
            return _workflow_run(_decode_workflow_event(value), record_time)
        if role == "llm_results":
            return _processed_document(_decode_result(value))
        return _failed_document(_decode_letter(value))
    except UNREADABLE_JSON as exc:
        raise Undecodable(f"invalid_{role}", why_unreadable(exc)) from exc
    except ValueError as exc:
        raise Undecodable(f"invalid_{role}", str(exc)) from exc


def decode_usage(value: bytes | None) -> UsageEvent:
    """A record of the usage topic (the consumer's loop calls this one directly: most records
    are usage, and this is the cheapest way there)."""
    if value is None:
        raise Undecodable("empty", "the record has no value")
    try:
        if may_hold_nul(value):
            return _decode_usage(value)  # refused with the field's name, as over HTTP
        return _decode_nul_free_usage(value)
    except UNREADABLE_JSON as exc:
        raise Undecodable("invalid_usage", why_unreadable(exc)) from exc
    except ValueError as exc:
        raise Undecodable("invalid_usage", str(exc)) from exc


def decode_usage_records(values: Sequence[bytes | None]) -> list[UsageEvent] | None:
    """A batch of usage records decoded in one pass, or ``None`` when one of them is empty,
    holds a NUL or does not decode: then each is decoded alone (:func:`decode_usage`), so that
    each refusal names its record. The pass is the one the loop of :func:`decode_usage` would
    make, without its per-record Python work (several times the decoding's own cost)."""
    # A NUL escape cannot span two values: the newline between them is not part of one.
    if None in values or may_hold_nul(b"\n".join(cast("Sequence[bytes]", values))):
        return None
    try:
        return list(map(_decode_nul_free_usage, cast("Sequence[bytes]", values)))
    except (*UNREADABLE_JSON, ValueError):
        return None


def _workflow_run(event: _WorkflowResultEvent, record_time: datetime) -> WorkflowRun | Skipped:
    status = _OUTCOMES.get(event.event_type)
    if status is None:
        return SKIPPED
    outcome = (
        msgspec.convert(event.payload, _Outcome) if isinstance(event.payload, dict) else _Outcome()
    )
    if outcome.status is not None:
        if outcome.status not in _RUN_STATUSES:
            return SKIPPED  # cancelled: neither a success nor a failure of the workflow
        status = _RUN_STATUSES[outcome.status]
    if not event.workflow_id:
        raise Undecodable("invalid_workflow_results", "a workflow result needs a workflow_id")
    run_id = event.workflow_run_id or event.event_id
    if not run_id:
        raise Undecodable(
            "invalid_workflow_results", "a workflow result needs a workflow_run_id or event_id"
        )
    ended = _aware(
        outcome.finished_at
        or outcome.completed_at
        or event.completed_at
        or event.timestamp
        or record_time
    )
    started = outcome.started_at or event.started_at
    duration_ms = next(
        (
            value
            for value in (
                outcome.duration_ms,
                None if outcome.duration_s is None else outcome.duration_s * 1000,
                event.duration_ms,
                None if event.duration_s is None else event.duration_s * 1000,
                None if started is None else (ended - _aware(started)).total_seconds() * 1000,
            )
            if value is not None
        ),
        None,
    )
    error = outcome.error if outcome.error is not None else event.error
    if error is not None and not isinstance(error, str):
        error = msgspec.json.encode(error).decode()
    return msgspec.convert(
        {
            "run_id": run_id,
            "workflow_id": event.workflow_id,
            "status": status,
            "timestamp": ended,
            "duration_ms": None if duration_ms is None else max(0.0, duration_ms),
            "source": "workflow-results",
            "error": storable_text_or_none(error, MAX_REASON_CHARS),
        },
        WorkflowRun,
    )


def _processed_document(result: DocumentResult) -> WorkflowRun:
    # Converted, not built: the result is anyone's record, and the run must be one the stores
    # hold (a NUL in its id, a time past the calendar's edge would fail every try to store).
    return msgspec.convert(
        {
            "run_id": processor_run_id(result.doc_id, result.source_offset),
            "workflow_id": processor_workflow_id(result.task),
            "status": "success" if result.status == "ok" else result.status,
            "timestamp": _aware(result.processed_at),
            "duration_ms": result.processing_ms,
            "source": "llm-results",
        },
        WorkflowRun,
    )


def _failed_document(letter: DeadLetter) -> WorkflowRun:
    try:
        task = _decode_task(letter.original).task
    except UNREADABLE_JSON:
        task = "unknown"
    if task not in get_args(Task):
        task = "unknown"  # an invalid document: its task is whatever it said
    # The letter is of a document that failed: it counts whatever its key holds, less the NULs
    # no store keeps (cut to a name's length: the run id keeps fewer of its characters anyway).
    key = storable_text(letter.key or "") or "?"
    return msgspec.convert(
        {
            "run_id": processor_run_id(key, f"{letter.topic}/{letter.partition}/{letter.offset}"),
            "workflow_id": processor_workflow_id(task),
            "status": "error",
            "timestamp": _aware(letter.failed_at),
            "source": "documents-dlq",
            "error": storable_text_or_none(
                f"{letter.error_type}: {letter.error}", MAX_REASON_CHARS
            ),
        },
        WorkflowRun,
    )
