"""Storing events, from Kafka or HTTP alike: insert once by key, count what was new.

A batch's rows are counted once each, whatever it takes to store them: a row as stored by the
write that finds it new, and as a duplicate only if no write of the batch found it new (it came
twice: in the batch, or stored before it). A batch the store refuses is written again in parts
(``refusals.py``), and one whose store was away is tried again whole (the Kafka consumer): those
writes find the batch's own rows stored, which are not duplicates. So the writes of a batch add
up what they found new (:class:`NewRows`), and its duplicates are counted once, when the batch
is done (:meth:`Ingestor.count_duplicates`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import pyarrow as pa

from libs.common.schemas.usage import IngestResult, QualityScore, UsageEvent, WorkflowRun
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.store import AnalyticsStore

_Written = TypeVar("_Written")


@dataclass(slots=True)
class NewRows:
    """What the writes of one batch found new, summed over all of them (each row is new to one
    write at most: the store's keys see to that)."""

    usage: int = 0
    runs: int = 0
    scores: int = 0
    """Scores taken: a score sent again replaces the stored one, and counts as taken."""


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

    async def write(
        self,
        usage: Sequence[UsageEvent] | pa.Table,
        runs: Sequence[WorkflowRun],
        *,
        source: str,
        new: NewRows,
        scores: Sequence[QualityScore] = (),
    ) -> None:
        """Store what is new of one write of a batch (the whole, or a part), count it as stored
        and add it to ``new``; raises the first failure once every write is done. Duplicates
        are not counted here (:meth:`count_duplicates`, once the batch is done).

        The three writes start together: the store runs them side by side where it can
        (DuckDB's usage and outcome writers, PostgreSQL's connections), and each kind's new
        rows are counted while the next kind is still being written, so counting adds nothing
        to the batch's time. Each kind is its own transaction: a kind whose write succeeded is
        counted even when another kind's failed. Its rows are stored, and a write of them
        again would not find them new: left uncounted there, they never would be."""
        usage_stored = asyncio.ensure_future(self._store.insert_usage(usage))
        runs_stored = asyncio.ensure_future(self._store.insert_runs(runs))
        scores_stored = asyncio.ensure_future(self._store.insert_scores(scores))
        failures: list[Exception] = []
        try:
            new_usage = await _written(usage_stored, failures)
            if new_usage is not None:
                self._metrics.count_usage(new_usage, source)
                new.usage += new_usage.num_rows
            new_runs = await _written(runs_stored, failures)
            if new_runs is not None:
                self._metrics.count_runs(new_runs, source)
                new.runs += len(new_runs)
            new.scores += await _written(scores_stored, failures) or 0
        finally:
            # Whatever failed, no write outlives the batch unawaited.
            await asyncio.gather(usage_stored, runs_stored, scores_stored, return_exceptions=True)
        if failures:
            raise failures[0]

    def count_duplicates(
        self, *, usage: int, runs: int, scores: int = 0, new: NewRows
    ) -> IngestResult:
        """Count as duplicates the rows of a batch that none of its writes found new (``new``),
        once the batch is done; ``usage``, ``runs`` and ``scores`` are how many rows of each
        kind it has, less those the store refused."""
        self._metrics.count_duplicates("usage", usage - new.usage)
        self._metrics.count_duplicates("runs", runs - new.runs)
        received = usage + runs + scores
        # A score written again (a batch in parts) is taken again: each counts once.
        stored = new.usage + new.runs + min(new.scores, scores)
        return IngestResult(received=received, stored=stored, duplicates=received - stored)


async def _written(write: asyncio.Future[_Written], failures: list[Exception]) -> _Written | None:
    """What ``write`` returned; None if it failed, its error added to ``failures``."""
    try:
        return await write
    except Exception as exc:
        failures.append(exc)
        return None
