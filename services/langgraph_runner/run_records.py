"""What a run's record becomes, apart from who runs it: a new run's first record, a change
stamped with the time, the answer a resume hands its graph, the interrupts it waits on, and the
unit an experiment assigns a variant to. Pure functions; the run manager (``runs.py``) and the
runs' tasks (``run_tasks.py``) save what they return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
from langgraph.types import Interrupt

from libs.common.schemas.nul_escape import may_hold_nul
from libs.common.schemas.workflows import (
    PendingInterrupt,
    RunStatus,
    WorkflowParameters,
    WorkflowTriggered,
)
from services.langgraph_runner.errors import InvalidWorkflowInput
from services.langgraph_runner.json_values import MAX_NESTING, json_shape, json_value
from services.langgraph_runner.store import RunRecord

METADATA_MAX_BYTES: Final = 65_536
"""How large a run's metadata may be as JSON. It travels with the run's outcome on
``workflow-results``: with metadata near a Kafka record's size the outcome could never be
published, however much of its output were left out."""

_encode = msgspec.json.Encoder().encode


def checked_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``metadata`` as the run keeps it; refuses it nested deeper than :data:`MAX_NESTING`,
    holding U+0000 (see :func:`refuse_nul`) or larger than :data:`METADATA_MAX_BYTES`."""
    kept = dict(metadata or {})
    # The depth must be known before encoding (too deep, msgspec raises RecursionError): the
    # walk that finds it looks at the texts on the way, so the JSON is not searched for NUL.
    shape = json_shape(kept)
    if shape.depth > MAX_NESTING:
        raise InvalidWorkflowInput(f"metadata: nested deeper than {MAX_NESTING} levels")
    if shape.holds_nul:
        raise _holds_nul("metadata")
    size = len(_encode(kept))
    if size > METADATA_MAX_BYTES:
        raise InvalidWorkflowInput(
            f"metadata: {size} bytes as JSON, at most {METADATA_MAX_BYTES} (it travels with "
            "the run's outcome; put large values in the input)"
        )
    return kept


def refuse_nul(value: Any, encoded: bytes, field: str) -> None:
    """Refuses ``value`` (``encoded``: its JSON) when a text in it holds U+0000: PostgreSQL's
    JSONB cannot keep one (a 500 there, a store that refuses the run's write), and no workflow
    needs it. The JSON is looked at first; the texts only when it may hold one (a text may
    spell a backslash and ``u0000``)."""
    if may_hold_nul(encoded) and json_shape(value).holds_nul:
        raise _holds_nul(field)


def _holds_nul(field: str) -> InvalidWorkflowInput:
    return InvalidWorkflowInput(f"{field}: holds U+0000, which the run store cannot keep")


def checked_input(payload: Mapping[str, Any]) -> None:
    """The input's own checks beyond its workflow's schema (see :func:`refuse_nul`)."""
    refuse_nul(payload, _encode(payload), "input")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_record(
    workflow_id: str,
    payload: Mapping[str, Any],
    parameters: WorkflowParameters,
    *,
    run_id: str,
    source: str,
    metadata: Mapping[str, Any] | None,
    owner: str,
    wants_report: Callable[[RunStatus], bool],
    event: WorkflowTriggered | None = None,
    headers: Mapping[str, str] | None = None,
) -> RunRecord:
    """A new run's record: ``pending``, ``owner``'s, to be reported when ``wants_report``
    says so."""
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
    return RunRecord(run=run, owner=owner, report=wants_report(run), headers=dict(headers or {}))


def changed(record: RunRecord, **changes: Any) -> RunRecord:
    """``record`` with its run's fields changed and ``updated_at`` now."""
    return msgspec.structs.replace(
        record, run=msgspec.structs.replace(record.run, updated_at=utcnow(), **changes)
    )


def resume_value(record: RunRecord, answer: Any, interrupt_id: str | None) -> Any:
    """What ``Command(resume=...)`` gets for ``answer``: the answer itself when one interrupt
    waits, else keyed by the interrupt it answers. Refuses a missing answer or an unknown id."""
    pending = [i.id for i in record.run.interrupts]
    if answer is msgspec.UNSET:
        raise InvalidWorkflowInput(
            "resume: the run waits for an answer to its interrupt (see interrupts in "
            "GET /runs/{run_id})"
        )
    if answer is None:
        # LangGraph fails the run on Command(resume=None) (an UnboundLocalError inside it).
        raise InvalidWorkflowInput("resume: null answers nothing; give the interrupt's answer")
    if json_shape(answer).depth > MAX_NESTING:
        raise InvalidWorkflowInput(f"resume: nested deeper than {MAX_NESTING} levels")
    if interrupt_id is None:
        if len(pending) > 1:
            raise InvalidWorkflowInput(
                f"interrupt_id: {len(pending)} interrupts wait ({pending}); name the one "
                "this answers"
            )
        return answer
    if interrupt_id not in pending:
        raise InvalidWorkflowInput(
            f"interrupt_id: {interrupt_id!r} is not waiting; waiting: {pending}"
        )
    return {interrupt_id: answer}


def pending_interrupts(interrupts: Sequence[Interrupt]) -> list[PendingInterrupt]:
    """The graph's interrupts as the run's status shows them (JSON values)."""
    return [
        PendingInterrupt(
            id=i.id,
            value=json_value(i.value),
            response_schema=i.response_schema if isinstance(i.response_schema, dict) else None,
        )
        for i in interrupts
    ]


def experiment_unit(metadata: Mapping[str, Any] | None, run_id: str) -> str:
    """Who an experiment assigns a variant to: ``metadata.unit`` when the caller names one (a
    document, a desk, a user), so that the same unit always gets the same variant; else the
    run itself."""
    unit = (metadata or {}).get("unit")
    return unit if isinstance(unit, str) and unit else run_id
