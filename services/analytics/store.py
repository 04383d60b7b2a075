"""Where usage and runs are kept: one small interface, DuckDB (default) and PostgreSQL.

Both keep raw rows (``pas_analytics_usage``, ``pas_analytics_runs``) and hourly rollups of the
rows older than the retention age (``..._hourly``); every query reads both, so totals do not
change when rows are rolled up. Percentiles need the raw rows and cover the retention age.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

import msgspec
import pyarrow as pa

from libs.common.schemas.usage import (
    Bucket,
    CostLine,
    GroupBy,
    ModelStats,
    QualityScore,
    RollupResult,
    ScoreLine,
    TrendMetric,
    TrendPoint,
    UsageEvent,
    WorkflowRun,
    WorkflowStats,
)
from libs.common.settings import env_names, require_postgres_extra
from services.analytics.settings import AnalyticsSettings

ExportKind = Literal["usage", "runs", "usage_hourly", "runs_hourly"]
ExportFormat = Literal["csv", "json", "parquet"]


class TimeWindow(msgspec.Struct, frozen=True):
    """``start <= t < end``, both aware (UTC)."""

    start: datetime
    end: datetime


class TrendFilter(msgspec.Struct, frozen=True, kw_only=True):
    workflow_id: str | None = None
    model: str | None = None
    desk: str | None = None


@runtime_checkable
class AnalyticsStore(Protocol):
    kind: str
    """``duckdb``, ``postgres`` or ``timescaledb``: what /health reports."""
    batches_in_flight: int
    """How many batches the Kafka consumer may hand over before the first of them is stored.
    More than one only where the store writes them in the order handed over."""

    async def open(self) -> None:
        """Connect and create the tables if needed."""
        ...

    async def close(self) -> None: ...

    reads_usage_tables: bool
    """Whether usage is best handed over as a usage table rather than as events (DuckDB
    inserts the table as it is): the Kafka consumer then reads records straight into one
    where it can (``usage_json.py``). Either form is taken by every store."""

    async def insert_usage(self, usage: Sequence[UsageEvent] | pa.Table) -> pa.Table:
        """Store the events not stored yet (by id and time), once each; returns those that
        were new, as a usage table (``usage_table.py``). ``usage``: events, or a usage
        table."""
        ...

    async def insert_runs(self, runs: Sequence[WorkflowRun]) -> list[WorkflowRun]:
        """Store the outcomes not stored yet (by run, status and time); returns the new ones."""
        ...

    async def insert_scores(self, scores: Sequence[QualityScore]) -> int:
        """Store the scores, one per answer and measure (a score sent again replaces the
        stored one); returns how many were taken."""
        ...

    async def score_stats(self, window: TimeWindow, workflow_id: str | None) -> list[ScoreLine]:
        """Per workflow, version, model and measure: count and mean."""
        ...

    async def workflow_stats(self, window: TimeWindow) -> list[WorkflowStats]: ...

    async def costs(self, window: TimeWindow, group_by: GroupBy) -> list[CostLine]: ...

    async def model_stats(self, window: TimeWindow) -> list[ModelStats]: ...

    async def trend(
        self, metric: TrendMetric, bucket: Bucket, window: TimeWindow, where: TrendFilter
    ) -> list[TrendPoint]:
        """Only the buckets that have data, oldest first."""
        ...

    async def success_rates(self, window: TimeWindow) -> dict[str, float]:
        """Per workflow: successful runs over runs."""
        ...

    def export(
        self, kind: ExportKind, fmt: ExportFormat, window: TimeWindow, chunk_rows: int
    ) -> AsyncIterator[bytes]:
        """The rows as CSV, JSON lines or Parquet, in pieces, never all in memory."""
        ...

    async def roll_up(self, cutoff: datetime) -> RollupResult:
        """Fold raw rows older than ``cutoff`` (an hour boundary) into the hourly tables."""
        ...


def store_for(settings: AnalyticsSettings) -> AnalyticsStore:
    """The store the settings name (not opened yet): PostgreSQL by DSN, else the DuckDB file."""
    # Imported here: both backends import this module's types, and psycopg is an extra.
    if settings.database_url:
        require_postgres_extra(env_names(type(settings), "database_url")[0])
        from services.analytics.postgres_store import PostgresStore  # noqa: PLC0415

        return PostgresStore(settings.database_url)
    from services.analytics.duckdb_store import DuckDBStore  # noqa: PLC0415

    return DuckDBStore(settings.db_path)
