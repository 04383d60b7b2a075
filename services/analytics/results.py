"""Rows of the queries in ``queries.py`` as the wire types the API answers with.

Both stores return plain tuples (numbers may be ``Decimal`` or big integers); one reading of
them here keeps the two stores' answers identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from libs.common.schemas.usage import (
    Bucket,
    CostLine,
    ModelStats,
    Percentiles,
    ScoreLine,
    TrendMetric,
    TrendPoint,
    WorkflowStats,
)
from services.analytics.queries import ADDITIVE_METRICS

Row = Sequence[Any]

_COST_DIGITS = 10
_BUCKET_WIDTH = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}


def _int(value: Any) -> int:
    return 0 if value is None else int(value)


def _float(value: Any, digits: int | None = None) -> float | None:
    if value is None:
        return None
    number = float(value)
    return round(number, digits) if digits is not None else number


def _cost(value: Any) -> float:
    return round(float(value or Decimal(0)), _COST_DIGITS)


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _percentiles(p50: Any, p95: Any, p99: Any) -> Percentiles:
    return Percentiles(p50=_float(p50, 3), p95=_float(p95, 3), p99=_float(p99, 3))


def cost_lines(rows: Iterable[Row]) -> list[CostLine]:
    lines = []
    for key, calls, prompt, completion, cost, cached, written in rows:
        lines.append(
            CostLine(
                key=key,
                llm_calls=_int(calls),
                prompt_tokens=_int(prompt),
                completion_tokens=_int(completion),
                total_tokens=_int(prompt) + _int(completion),
                cost_usd=_cost(cost),
                cached_tokens=_int(cached),
                cache_write_tokens=_int(written),
            )
        )
    return lines


def cost_total(lines: Sequence[CostLine]) -> CostLine:
    """The sum of the groups (costs summed as decimals: each is exact at 10 places)."""
    return CostLine(
        key=None,
        llm_calls=sum(line.llm_calls for line in lines),
        prompt_tokens=sum(line.prompt_tokens for line in lines),
        completion_tokens=sum(line.completion_tokens for line in lines),
        total_tokens=sum(line.total_tokens for line in lines),
        cost_usd=_cost(sum((Decimal(str(line.cost_usd)) for line in lines), Decimal(0))),
        cached_tokens=sum(line.cached_tokens for line in lines),
        cache_write_tokens=sum(line.cache_write_tokens for line in lines),
    )


def score_lines(rows: Iterable[Row]) -> list[ScoreLine]:
    return [
        ScoreLine(
            workflow_id=workflow_id,
            workflow_version=version,
            model=model,
            metric=metric,
            count=_int(count),
            mean=float(mean),
            min=float(low),
            max=float(high),
        )
        for workflow_id, version, model, metric, count, mean, low, high in rows
    ]


def workflow_stats(rows: Iterable[Row]) -> list[WorkflowStats]:
    stats = []
    for workflow_id, run_count, ok_count, p50, p95, p99, ungrounded, calls, tokens, cost in rows:
        runs, ok = _int(run_count), _int(ok_count)
        stats.append(
            WorkflowStats(
                workflow_id=workflow_id,
                runs=runs,
                successes=ok,
                failures=runs - ok,
                ungrounded=_int(ungrounded),
                success_rate=_ratio(ok, runs),
                duration_ms=_percentiles(p50, p95, p99),
                llm_calls=_int(calls),
                tokens=_int(tokens),
                cost_usd=_cost(cost),
            )
        )
    return stats


def model_stats(rows: Iterable[Row]) -> list[ModelStats]:
    stats = []
    for row in rows:
        (model, provider, calls, errors, latency_sum, ok_completion, ok_latency) = row[:7]
        prompt, completion, cost, p50, p95, p99 = row[7:]
        calls = _int(calls)
        ok_seconds = float(ok_latency or 0) / 1000
        stats.append(
            ModelStats(
                model=model,
                provider=provider,
                llm_calls=calls,
                errors=_int(errors),
                error_rate=_ratio(_int(errors), calls),
                latency_ms=_percentiles(p50, p95, p99),
                mean_latency_ms=round(float(latency_sum or 0) / calls, 3) if calls else None,
                tokens_per_s=round(_int(ok_completion) / ok_seconds, 3) if ok_seconds else None,
                prompt_tokens=_int(prompt),
                completion_tokens=_int(completion),
                cost_usd=_cost(cost),
            )
        )
    return stats


def bucket_start(moment: datetime, bucket: Bucket) -> datetime:
    moment = moment.astimezone(UTC)
    if bucket == "1m":
        return moment.replace(second=0, microsecond=0)
    if bucket == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def bucket_count(start: datetime, end: datetime, bucket: Bucket) -> int:
    """How many buckets a trend from ``start`` to ``end`` has."""
    first = bucket_start(start, bucket)
    return max(1, -(-(end - first) // _BUCKET_WIDTH[bucket]))


def trend_points(
    rows: Iterable[Row], metric: TrendMetric, bucket: Bucket, start: datetime, end: datetime
) -> list[TrendPoint]:
    """Every bucket from ``start`` to ``end``: 0 where an additive metric saw nothing, no value
    where a rate or percentile had nothing to measure."""
    found = {bucket_start(t, bucket): value for t, value in rows}
    empty = 0.0 if metric in ADDITIVE_METRICS else None
    digits = 10 if metric == "cost" else 6
    points = []
    moment = bucket_start(start, bucket)
    width = _BUCKET_WIDTH[bucket]
    while moment < end:
        value = found.get(moment)
        points.append(TrendPoint(t=moment, value=empty if value is None else _float(value, digits)))
        moment += width
    return points
