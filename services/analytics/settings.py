"""The collector's settings, read from ``ANALYTICS_*`` variables (Kafka from the shared names)."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from libs.common.constants import (
    ANALYTICS_PORT,
    KAFKA_PORT,
    TOPIC_ANALYTICS_DLQ,
    TOPIC_FINANCIAL_DOCUMENTS_DLQ,
    TOPIC_LLM_RESULTS,
    TOPIC_LLM_USAGE,
    TOPIC_WORKFLOW_RESULTS,
)
from libs.common.kit import ServiceSettings

Positive = Annotated[float, msgspec.Meta(gt=0)]
Topic = Annotated[str, msgspec.Meta(max_length=249, pattern=r"^[A-Za-z0-9._-]*$")]


class AnalyticsSettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "ANALYTICS_"
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
    }

    port: int = ANALYTICS_PORT
    max_body_bytes: int = 16_777_216
    """``POST /events`` batches may be large."""
    db_path: str = ".pas/data/analytics.duckdb"
    """The DuckDB file (the default store)."""
    database_url: Annotated[str, msgspec.Meta(pattern=r"^postgres(ql)?://.+")] | None = None
    """A PostgreSQL DSN: store there instead (TimescaleDB hypertables when available)."""
    token: str | None = None
    """When set, ``POST /events`` and ``POST /admin/rollup`` need ``Authorization: Bearer``."""

    consume: bool = True
    """Consume the topics below; false: events arrive over ``POST /events`` only."""
    bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    group_id: str = "pas-analytics"
    usage_topic: Topic = TOPIC_LLM_USAGE
    llm_results_topic: Topic = TOPIC_LLM_RESULTS
    workflow_results_topic: Topic = TOPIC_WORKFLOW_RESULTS
    documents_dlq_topic: Topic = TOPIC_FINANCIAL_DOCUMENTS_DLQ
    """The processor's dead letters: documents that failed count as failed runs. Empty: off."""
    dlq_topic: Topic = TOPIC_ANALYTICS_DLQ
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 30_000
    """Records stored (then committed) together, at most: larger batches spread each store
    call's fixed cost (its duplicate check reads the stored rows of the batch's time span) over
    more events (docs/benchmarks.md), for about 40 MiB more at the peak. A batch is what the
    fetches hold: light traffic gives small batches, not later ones."""
    fetch_partition_bytes: Annotated[int, msgspec.Meta(ge=65_536)] = 8 * 1024 * 1024
    """At most this much of one partition in a fetch. aiokafka's default (1 MiB) holds about
    3,000 usage events, so a full batch would wait for several fetches while the store is ready
    for it."""
    session_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=300)] = 10.0
    """How long the group waits for a silent collector before giving its partitions away."""

    raw_retention_s: Annotated[float, msgspec.Meta(ge=0)] = 30 * 86_400.0
    """Raw rows older than this are rolled up into hourly aggregates; 0 keeps them forever."""
    rollup_interval_s: Positive = 3600.0
    success_rate_window_s: Positive = 3600.0
    """Window of the ``workflow_success_rate`` gauge."""
    gauge_refresh_s: Positive = 15.0
    export_chunk_rows: Annotated[int, msgspec.Meta(ge=100, le=1_000_000)] = 10_000
    max_trend_points: Annotated[int, msgspec.Meta(ge=10, le=1_000_000)] = 10_000
    dashboard_refresh_s: Annotated[float, msgspec.Meta(ge=1)] = 15.0
