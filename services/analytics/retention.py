"""Retention: raw rows older than the configured age become hourly aggregates.

The cutoff is always an hour boundary, so that an hour is folded whole; folding adds to an
hour already folded (late events), so totals stay exact. Percentiles need raw rows and so
cover the retention age only.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from libs.common.schemas.usage import RollupResult
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.store import AnalyticsStore

logger = structlog.get_logger("pas.analytics.retention")


def rollup_cutoff(now: datetime, retention_s: float) -> datetime:
    """The hour boundary at or before ``now - retention_s``."""
    return (now.astimezone(UTC) - timedelta(seconds=retention_s)).replace(
        minute=0, second=0, microsecond=0
    )


async def roll_up(
    store: AnalyticsStore, metrics: AnalyticsMetrics, cutoff: datetime
) -> RollupResult:
    result = await store.roll_up(cutoff)
    metrics.rolled_up.labels("usage").inc(result.usage_rows)
    metrics.rolled_up.labels("runs").inc(result.run_rows)
    if result.usage_rows or result.run_rows:
        logger.info(
            "rolled up raw rows into hourly aggregates",
            cutoff=cutoff.isoformat(),
            usage_rows=result.usage_rows,
            run_rows=result.run_rows,
        )
    return result


async def roll_up_forever(
    store: AnalyticsStore, metrics: AnalyticsMetrics, retention_s: float, interval_s: float
) -> None:
    while True:
        try:
            await roll_up(store, metrics, rollup_cutoff(datetime.now(UTC), retention_s))
        except Exception:
            # A busy or unreachable database must not end retention for good.
            logger.exception("rolling up failed; retrying at the next interval")
        await asyncio.sleep(interval_s)
