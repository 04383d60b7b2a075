"""The per-answer scores sent to the analytics collector as :class:`QualityScore` rows
(``POST {url}/events`` with ``{"scores": [...]}``), so that quality sits next to usage, cost and
latency per workflow version and model."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from libs.common.clients.analytics import AnalyticsClient
from libs.common.schemas.usage import EventBatch, QualityScore
from libs.evaluation.report import AnswerRow

BATCH = 5_000
"""Scores per request (the collector takes up to 50,000)."""

METRIC_OF_TASK = {
    "key_figures": "key_figures_f1",
    "sentiment": "sentiment_correct",
    "summary": "summary_faithfulness",
}


def scores_of(
    rows: Sequence[AnswerRow], *, at: datetime, default_model: str | None
) -> list[QualityScore]:
    """Each row's score under its task's metric (a summary stating no number has none), and
    ``grounded`` (1.0 or 0.0) for key figures and sentiment."""
    scores = []
    for row in rows:

        def score(metric: str, value: float, row: AnswerRow = row) -> QualityScore:
            return QualityScore(
                run_id=row.run_id[:128],
                workflow_id=row.workflow_id,
                workflow_version=row.workflow_version,
                model=row.model or default_model or "unknown",
                metric=metric,
                value=value,
                timestamp=at,
            )

        if row.score is not None:
            scores.append(score(METRIC_OF_TASK[row.task], row.score))
        if row.grounded is not None:
            scores.append(score("grounded", float(row.grounded)))
    return scores


async def send_scores(url: str, scores: Sequence[QualityScore], *, token: str | None) -> int:
    """POST the scores in batches; the number the collector stored or already held. Raises the
    client's ``AnalyticsError`` when the collector cannot be reached or refuses a batch."""
    taken = 0
    async with AnalyticsClient(url, token=token, timeout_s=30.0) as analytics:
        for start in range(0, len(scores), BATCH):
            batch = EventBatch(scores=list(scores[start : start + BATCH]))
            result = await analytics.send_events(batch)
            taken += result.stored + result.duplicates
    return taken
