"""LLM usage on ``llm-usage`` and the analytics collector's wire types.

A :class:`UsageEvent` is published once per LLM call by the component that made it (the
provider router for the calls it routes, an LLM service for calls made to it directly). The
collector keys each by ``event_id`` and its ``timestamp``, so a redelivered event counts once.

Workflow outcomes reach the collector as :class:`WorkflowRun` rows: from ``workflow-results``,
from the Kafka processor's ``llm-results`` and its DLQ, or over ``POST /events``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from libs.common.schemas.patterns import TEXT_END

# Headers a caller sets so that the LLM calls it causes are attributed to its workflow run.
HEADER_WORKFLOW_ID = "X-PAS-Workflow-Id"
HEADER_WORKFLOW_RUN_ID = "X-PAS-Workflow-Run-Id"
# Set by a component that reports the call's usage itself (the router, to the LLM service it
# calls), so that one call gives one event, not one per hop.
HEADER_USAGE_REPORTED_BY = "X-PAS-Usage-Reported-By"

UsageStatus = Literal["ok", "error"]
RunStatus = Literal["success", "error", "ungrounded"]
"""``ungrounded``: a document answered with a figure its source does not hold (not a success)."""

# What the collector's stores can hold, refused at the edge (a 400 over HTTP, a dead letter
# from Kafka) rather than failing in the store: PostgreSQL text holds no NUL character;
# counts and version numbers are INTEGER; cost is DECIMAL(18,10), below 10^8 once rounded to
# ten places (the whole-dollar bound leaves room for that rounding); durations are summed as
# DOUBLE, which PostgreSQL refuses to overflow, so a year bounds one call or run.
NO_NUL = r"^[^\x00]*$"
MAX_COUNT = 2**31 - 1
MAX_COST_USD = 99_999_999.0
MAX_DURATION_MS = 366 * 24 * 3600 * 1000.0
MAX_REASON_CHARS = 2000
"""The longest error a usage event or a workflow run keeps."""

# Times within which a call or a run can have ended: one outside is a clock or a producer gone
# wrong, and one at the calendar's edge overflows once converted to UTC (9999-12-31T23:30-01:00
# is in the year 10000), which no store can hold.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME = datetime(2200, 1, 1, tzinfo=UTC)


def check_time(moment: datetime, field: str = "timestamp") -> None:
    """Refuses ``moment`` outside :data:`EARLIEST_TIME` to :data:`LATEST_TIME` (a
    ``__post_init__`` raising ``ValueError`` is a validation error to msgspec: a 400 over HTTP,
    a dead letter from Kafka)."""
    if not EARLIEST_TIME <= moment < LATEST_TIME:
        raise ValueError(
            f"{field}: {moment.isoformat()} is not between {EARLIEST_TIME:%Y-%m-%d} and "
            f"{LATEST_TIME:%Y-%m-%d} (UTC)"
        )


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=NO_NUL)]
OptionalName = Annotated[str, msgspec.Meta(max_length=256, pattern=NO_NUL)] | None
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=NO_NUL)]
AwareTime = Annotated[datetime, msgspec.Meta(tz=True)]
Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
Cost = Annotated[float, msgspec.Meta(ge=0, le=MAX_COST_USD)]
Duration = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_MS)]
Reason = Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS, pattern=NO_NUL)] | None


class UsageEvent(msgspec.Struct, kw_only=True, frozen=True):
    """One LLM call: who made it, for what, how many tokens, how long, at what cost."""

    event_id: Identifier
    timestamp: AwareTime
    """When the call finished (UTC)."""
    service: Name
    """The PAS service that made the call and reported it (``provider_router``,
    ``llama31_8b``, ...)."""
    provider: Name
    """Who answered: a router provider name (``local``, ``openai``, ...) or an LLM service's
    backend (``embedded``, ``ollama``, ``openai``)."""
    model: Name
    status: UsageStatus
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    latency_ms: Duration = 0.0
    cost_usd: Cost = 0.0
    request_id: OptionalName = None
    capability: OptionalName = None
    workflow_id: OptionalName = None
    run_id: OptionalName = None
    error: Reason = None
    desk: OptionalName = None
    """The desk key the call was made for (the router's ``ROUTER_KEYS_FILE``), whose spend it
    is; none for a call made with the operator's token or to a service directly."""
    cached_tokens: Count = 0
    """Of ``prompt_tokens``, those taken from a prompt cache instead of read: a provider's
    (OpenAI's ``cached_tokens``, Anthropic's cache reads) or the embedded model's reused
    prompt start."""
    cache_write_tokens: Count = 0
    """Of ``prompt_tokens``, those a provider wrote to its prompt cache for later calls, at
    its cache-write price (Anthropic's ``cache_creation_input_tokens``)."""

    def __post_init__(self) -> None:
        check_time(self.timestamp)


def storable_text(text: str, limit: int = 256) -> str:
    """``text`` as the collector's stores can hold it: without NUL (no PostgreSQL text holds
    one) and cut to ``limit`` characters (a :data:`Name`'s bound by default)."""
    return text.replace("\x00", "")[:limit]


def storable_text_or_none(text: str | None, limit: int = 256) -> str | None:
    """:func:`storable_text` for an optional field: ``None`` for no text or an empty one."""
    return storable_text(text, limit) if text else None


def new_usage_event(
    *,
    service: str,
    provider: str,
    model: str,
    status: UsageStatus,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    latency_ms: float = 0.0,
    cost_usd: float = 0.0,
    request_id: str | None = None,
    capability: str | None = None,
    workflow_id: str | None = None,
    run_id: str | None = None,
    error: str | None = None,
    desk: str | None = None,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> UsageEvent:
    """A usage event with a fresh id, stamped now; text and numbers are brought within the
    schema's limits (a caller's header can be longer, an error can quote a NUL), so that the
    collector never refuses the event."""
    return UsageEvent(
        event_id=uuid.uuid4().hex,
        timestamp=datetime.now(UTC),
        service=storable_text(service),
        provider=storable_text(provider),
        model=storable_text(model),
        status=status,
        prompt_tokens=min(max(0, prompt_tokens), MAX_COUNT),
        completion_tokens=min(max(0, completion_tokens), MAX_COUNT),
        latency_ms=round(min(max(0.0, latency_ms), MAX_DURATION_MS), 3),
        cost_usd=min(max(0.0, cost_usd), MAX_COST_USD),
        request_id=storable_text_or_none(request_id),
        capability=storable_text_or_none(capability),
        workflow_id=storable_text_or_none(workflow_id),
        run_id=storable_text_or_none(run_id),
        error=storable_text_or_none(error, MAX_REASON_CHARS),
        desk=storable_text_or_none(desk),
        cached_tokens=min(max(0, cached_tokens), MAX_COUNT),
        cache_write_tokens=min(max(0, cache_write_tokens), MAX_COUNT),
    )


class WorkflowRun(msgspec.Struct, kw_only=True, frozen=True):
    """How a workflow run ended. A run counts once, with its latest outcome: a run that fails
    and is resumed to success is one successful run (as the runner's results say)."""

    run_id: Name
    """The run's id (the runner's ``workflow_run_id``)."""
    workflow_id: Name
    status: RunStatus
    timestamp: AwareTime
    """When the run ended (UTC)."""
    duration_ms: Duration | None = None
    source: Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)] = "api"
    """Where the outcome came from: ``workflow-results``, ``llm-results``, ``api``..."""
    error: Reason = None

    def __post_init__(self) -> None:
        check_time(self.timestamp)


ScoreName = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z0-9_.]+" + TEXT_END)
]


class QualityScore(msgspec.Struct, kw_only=True, frozen=True):
    """How good one answer was, by one measure (``pas eval`` sends them): the collector keeps
    one per ``(run_id, metric)`` and reports means per workflow version and model."""

    run_id: Identifier
    """The scored answer (an evaluation names it ``<eval id>/<doc id>/<task>``)."""
    workflow_id: Name
    workflow_version: Annotated[int, msgspec.Meta(ge=1, le=MAX_COUNT)] | None = None
    """The version manager's version the answer was made with, if any."""
    model: Name
    metric: ScoreName
    """``key_figures_f1``, ``sentiment_correct``, ``summary_faithfulness``, ``grounded``..."""
    value: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)]
    timestamp: AwareTime
    source: Annotated[str, msgspec.Meta(max_length=64, pattern=NO_NUL)] = "eval"

    def __post_init__(self) -> None:
        check_time(self.timestamp)


class EventBatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /events``: usage events, workflow outcomes and quality scores, for setups
    without Kafka (and for scores, which only an evaluation makes)."""

    usage: Annotated[list[UsageEvent], msgspec.Meta(max_length=50_000)] = msgspec.field(
        default_factory=list
    )
    runs: Annotated[list[WorkflowRun], msgspec.Meta(max_length=50_000)] = msgspec.field(
        default_factory=list
    )
    scores: Annotated[list[QualityScore], msgspec.Meta(max_length=50_000)] = msgspec.field(
        default_factory=list
    )


class IngestResult(msgspec.Struct, kw_only=True):
    received: int
    stored: int
    duplicates: int


# --- what the collector answers --------------------------------------------------------------


class Percentiles(msgspec.Struct, kw_only=True):
    p50: float | None
    p95: float | None
    p99: float | None


class Period(msgspec.Struct, kw_only=True):
    start: datetime
    end: datetime


class WorkflowStats(msgspec.Struct, kw_only=True):
    workflow_id: str
    runs: int
    successes: int
    failures: int
    """Every run that is not a success, the ungrounded included."""
    ungrounded: int = 0
    """Documents answered with a figure or reason their source does not hold."""
    success_rate: float | None
    duration_ms: Percentiles
    """Over the runs still held raw (younger than the retention age)."""
    llm_calls: int
    tokens: int
    cost_usd: float


class ScoreLine(msgspec.Struct, kw_only=True):
    """One measure's scores for one workflow version on one model."""

    workflow_id: str
    workflow_version: int | None
    model: str
    metric: str
    count: int
    mean: float
    min: float
    max: float


class ScoreReport(msgspec.Struct, kw_only=True):
    period: Period
    scores: list[ScoreLine]


class WorkflowReport(msgspec.Struct, kw_only=True):
    period: Period
    workflows: list[WorkflowStats]


GroupBy = Literal["model", "workflow", "provider", "capability", "service", "desk"]


class CostLine(msgspec.Struct, kw_only=True):
    key: str | None
    """The group's value (a model name, a workflow id...); null for calls without one."""
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_usd: float
    cached_tokens: int = 0
    """Of ``prompt_tokens``, those taken from a prompt cache."""
    cache_write_tokens: int = 0
    """Of ``prompt_tokens``, those written to a provider's prompt cache."""


class CostReport(msgspec.Struct, kw_only=True):
    period: Period
    group_by: GroupBy
    groups: list[CostLine]
    total: CostLine


class ModelStats(msgspec.Struct, kw_only=True):
    model: str
    provider: str
    llm_calls: int
    errors: int
    error_rate: float | None
    latency_ms: Percentiles
    """Over the calls still held raw (younger than the retention age)."""
    mean_latency_ms: float | None
    tokens_per_s: float | None
    """Completion tokens over the time of successful calls."""
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ModelReport(msgspec.Struct, kw_only=True):
    period: Period
    models: list[ModelStats]


TrendMetric = Literal[
    "runs",
    "failures",
    "success_rate",
    "duration_p50",
    "duration_p95",
    "duration_p99",
    "llm_calls",
    "llm_errors",
    "error_rate",
    "tokens",
    "cost",
    "latency_p50",
    "latency_p95",
    "latency_p99",
]
Bucket = Literal["1m", "1h", "1d"]


class TrendPoint(msgspec.Struct, kw_only=True):
    t: datetime
    value: float | None


class Trend(msgspec.Struct, kw_only=True):
    metric: TrendMetric
    bucket: Bucket
    period: Period
    points: list[TrendPoint]


class RollupResult(msgspec.Struct, kw_only=True):
    cutoff: datetime
    """Raw rows older than this were rolled up into hourly aggregates and deleted."""
    usage_rows: int
    run_rows: int
