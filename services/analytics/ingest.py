"""Storing events, from Kafka or HTTP alike: insert once by key, count what was new."""

from __future__ import annotations

from collections.abc import Sequence

from libs.common.schemas.usage import IngestResult, QualityScore, UsageEvent, WorkflowRun
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.store import AnalyticsStore


class Ingestor:
    def __init__(self, store: AnalyticsStore, metrics: AnalyticsMetrics) -> None:
        self._store = store
        self._metrics = metrics

    async def ingest(
        self,
        usage: Sequence[UsageEvent],
        runs: Sequence[WorkflowRun],
        *,
        source: str,
        scores: Sequence[QualityScore] = (),
    ) -> IngestResult:
        """Store what is new; raises if the store fails (nothing is then counted as stored).
        Scores replace the stored score of the same answer and measure: each counts as stored."""
        new_usage = await self._store.insert_usage(usage)
        new_runs = await self._store.insert_runs(runs)
        stored_scores = await self._store.insert_scores(scores)
        self._metrics.count_usage(new_usage, source, len(usage))
        self._metrics.count_runs(new_runs, source, len(runs))
        received = len(usage) + len(runs) + len(scores)
        stored = new_usage.num_rows + len(new_runs) + stored_scores
        return IngestResult(received=received, stored=stored, duplicates=received - stored)
