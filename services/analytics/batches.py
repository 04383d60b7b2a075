"""Events as the column lists a bulk insert takes, and which of them the store found new.

Runs (both stores) and PostgreSQL's usage go in as one list per column (``unnest``, or
``COPY`` rows) and the insert returns the keys of the rows that were not there yet; duplicates
inside a batch are dropped first, so that a statement never meets the same key twice. DuckDB
takes usage as an Arrow table instead (``usage_table.py``, ``duckdb_usage.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from libs.common.schemas.usage import QualityScore, UsageEvent, WorkflowRun
from services.analytics.queries import RUN_COLUMNS, SCORE_COLUMNS, USAGE_COLUMNS

UsageKey = tuple[str, datetime]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def usage_key(event: UsageEvent) -> UsageKey:
    return event.event_id, _utc(event.timestamp)


def usage_columns(events: Sequence[UsageEvent]) -> tuple[list[UsageEvent], list[list[Any]]]:
    """The events without in-batch duplicates, and their values column by column (in the
    order of ``queries.USAGE_COLUMNS``)."""
    first: dict[UsageKey, UsageEvent] = {}
    for event in events:
        first.setdefault(usage_key(event), event)
    unique = list(first.values())
    columns: list[list[Any]] = [[] for _ in USAGE_COLUMNS]
    for e in unique:
        values = (
            e.event_id,
            _utc(e.timestamp),
            e.service,
            e.provider,
            e.model,
            e.capability,
            e.workflow_id,
            e.run_id,
            e.request_id,
            e.prompt_tokens,
            e.completion_tokens,
            e.latency_ms,
            e.cost_usd,
            e.status,
            e.error,
            e.desk,
            e.cached_tokens,
            e.cache_write_tokens,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return unique, columns


def run_columns(runs: Sequence[WorkflowRun]) -> tuple[list[WorkflowRun], list[list[Any]]]:
    """The latest outcome of each run in the batch, and its values column by column (in the
    order of ``queries.RUN_COLUMNS``)."""
    latest: dict[str, WorkflowRun] = {}
    for run in runs:
        known = latest.get(run.run_id)
        if known is None or _utc(run.timestamp) > _utc(known.timestamp):
            latest[run.run_id] = run
    unique = list(latest.values())
    columns: list[list[Any]] = [[] for _ in RUN_COLUMNS]
    for r in unique:
        values = (
            r.run_id,
            r.status,
            _utc(r.timestamp),
            r.workflow_id,
            r.duration_ms,
            r.source,
            r.error,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return unique, columns


def new_usage(events: Iterable[UsageEvent], stored: Iterable[Sequence[Any]]) -> list[UsageEvent]:
    """The events whose ``(event_id, ts)`` the insert returned."""
    keys = {(row[0], _utc(row[1])) for row in stored}
    return [e for e in events if usage_key(e) in keys]


def new_runs(unique: Iterable[WorkflowRun], stored: Iterable[Sequence[Any]]) -> list[WorkflowRun]:
    """The runs of ``unique`` (one per run id: :func:`run_columns`'s) whose run id the insert
    returned. The id alone names the row: reading back each stored time as an aware datetime,
    to match the whole key, cost the DuckDB store's event loop a few ms a batch of 500."""
    ids = {row[0] for row in stored}
    return [r for r in unique if r.run_id in ids]


def score_columns(scores: Sequence[QualityScore]) -> list[list[Any]]:
    """One score per answer and measure (the last sent wins: an upsert may not touch a row
    twice), column by column in the order of ``queries.SCORE_COLUMNS``."""
    last = {(score.run_id, score.metric): score for score in scores}
    columns: list[list[Any]] = [[] for _ in SCORE_COLUMNS]
    for s in last.values():
        values = (
            s.run_id,
            s.metric,
            _utc(s.timestamp),
            s.workflow_id,
            s.workflow_version,
            s.model,
            s.value,
            s.source,
        )
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    return columns
