"""Wire types for records that hold no NUL, decoded without the no-NUL pattern.

The shared wire types refuse NUL (``\\u0000``, the only way JSON can carry one) in every text
field with a regular expression, because PostgreSQL cannot hold it in text. Checked per field,
that pattern is most of the cost of decoding an event. A body or record whose bytes hold no
``\\u0000`` escape meets it in every field (:func:`~libs.common.schemas.nul_escape.may_hold_nul`
tells), so it is decoded with these types: the same fields, defaults and bounds without the
pattern. Anything else takes the strict types, so that its refusal names the field, as it
always has.

``gc=False``: events hold no references for the garbage collector to follow.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from libs.common.schemas.usage import (
    MAX_REASON_CHARS,
    AwareTime,
    Cost,
    Count,
    Duration,
    RunStatus,
    UsageEvent,
    UsageStatus,
    WorkflowRun,
)

_Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
_OptionalText = Annotated[str, msgspec.Meta(max_length=256)] | None
_Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] | None


class NulFreeUsage(UsageEvent, frozen=True, kw_only=True, gc=False):
    """A :class:`UsageEvent` from bytes that hold no NUL."""

    event_id: _Identifier
    timestamp: AwareTime
    service: _Text
    provider: _Text
    model: _Text
    status: UsageStatus
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    latency_ms: Duration = 0.0
    cost_usd: Cost = 0.0
    request_id: _OptionalText = None
    capability: _OptionalText = None
    workflow_id: _OptionalText = None
    run_id: _OptionalText = None
    error: _Reason = None
    desk: _OptionalText = None
    cached_tokens: Count = 0
    cache_write_tokens: Count = 0


class NulFreeRun(WorkflowRun, frozen=True, kw_only=True, gc=False):
    """A :class:`WorkflowRun` from bytes that hold no NUL."""

    run_id: _Text
    workflow_id: _Text
    status: RunStatus
    timestamp: AwareTime
    duration_ms: Duration | None = None
    source: Annotated[str, msgspec.Meta(max_length=64)] = "api"
    error: _Reason = None


# A change to the shared types must be made here too: same fields, same order, same defaults.
for _fast, _strict in ((NulFreeUsage, UsageEvent), (NulFreeRun, WorkflowRun)):
    assert _fast.__struct_fields__ == _strict.__struct_fields__, _fast
    assert _fast.__struct_defaults__ == _strict.__struct_defaults__, _fast
