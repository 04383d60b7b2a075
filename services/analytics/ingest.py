"""Storing events, from Kafka or HTTP alike: insert once by key, count what was new."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pyarrow as pa

from libs.common.schemas.usage import IngestResult, QualityScore, UsageEvent, WorkflowRun
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.store import AnalyticsStore


class Ingestor:
    def __init__(self, store: AnalyticsStore, metrics: AnalyticsMetrics) -> None:
        self._store = store
        self._metrics = metrics

    @property
    def reads_usage_tables(self) -> bool:
        """Whether usage is best handed over as a usage table (the store's)."""
        return self._store.reads_usage_tables

    @property
    def batches_in_flight(self) -> int:
        """How many batches may be handed over before the first is stored (the store's)."""
        return self._store.batches_in_flight

    async def ingest(
        self,
        usage: Sequence[UsageEvent] | pa.Table,
        runs: Sequence[WorkflowRun],
        *,
        source: str,
        scores: Sequence[QualityScore] = (),
    ) -> IngestResult:
        """Store what is new; raises if a write fails (the caller then answers an error: what
        was stored is stored once however often the batch comes again).
        Scores replace the stored score of the same answer and measure: each counts as stored.

        The three writes start together: the store runs them side by side where it can
        (DuckDB's usage and outcome writers, PostgreSQL's connections), and each kind's new
        rows are counted while the next kind is still being written, so counting adds nothing
        to the batch's time."""
        usage_stored = asyncio.ensure_future(self._store.insert_usage(usage))
        runs_stored = asyncio.ensure_future(self._store.insert_runs(runs))
        scores_stored = asyncio.ensure_future(self._store.insert_scores(scores))
        try:
            new_usage = await usage_stored
            self._metrics.count_usage(new_usage, source, len(usage))
            new_runs = await runs_stored
            self._metrics.count_runs(new_runs, source, len(runs))
            stored_scores = await scores_stored
        finally:
            # Whatever failed, no write outlives the batch unawaited.
            await asyncio.gather(usage_stored, runs_stored, scores_stored, return_exceptions=True)
        received = len(usage) + len(runs) + len(scores)
        stored = new_usage.num_rows + len(new_runs) + stored_scores
        return IngestResult(received=received, stored=stored, duplicates=received - stored)
