"""Prometheus metrics: the spec's workflow and LLM cost metrics, and the collector's own.

The spec's names (``workflow_executions_total``, ``workflow_duration_seconds``,
``llm_cost_total``, ``workflow_success_rate``) count what the collector stores, once per event:
duplicates do not move them. ``workflow_success_rate`` is read from the store over a window, so
it survives restarts; the counters start at zero with the process, as counters do.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from libs.common.schemas.usage import WorkflowRun
from services.analytics.store import AnalyticsStore, TimeWindow

logger = structlog.get_logger("pas.analytics.metrics")

_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class SuccessRates(Collector):
    """``workflow_success_rate{workflow_id}``, refreshed from the store in the background."""

    def __init__(self) -> None:
        self.rates: dict[str, float] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "workflow_success_rate",
            "Successful runs over runs per workflow, over ANALYTICS_SUCCESS_RATE_WINDOW_S",
            labels=["workflow_id"],
        )
        for workflow_id, rate in sorted(self.rates.items()):
            family.add_metric([workflow_id], rate)
        yield family


class BatchHistogram(Histogram):
    """A histogram that also takes a batch of observations at once, counted per bucket."""

    def observe_batch(self, bucket_counts: Sequence[int], total: float) -> None:
        """The same as ``observe`` once per value, for values that fell ``bucket_counts[i]``
        at a time into bucket ``i`` (the first bound not below them, ``+Inf`` last) and sum
        to ``total``."""
        self._sum.inc(total)
        for bucket, count in zip(self._buckets, bucket_counts, strict=True):
            if count:
                bucket.inc(count)


def _bucket_of(values: pa.ChunkedArray, bounds: Sequence[float]) -> pa.Array:
    """Each value's bucket: the first bound not below it (``value <= bound``, as ``observe``
    tests), or ``len(bounds)`` (``+Inf``)."""
    return pa.array(np.searchsorted(np.asarray(bounds), values.to_numpy(), side="left"))


def _bucket_counts(values: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """How many of ``values`` fall in each bucket (as :func:`_bucket_of` places them)."""
    placed = np.searchsorted(np.asarray(bounds), np.asarray(values), side="left")
    return [int(count) for count in np.bincount(placed, minlength=len(bounds) + 1)]


def _grouped(
    table: pa.Table, keys: list[str], aggregations: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        table.group_by(keys, use_threads=False).aggregate(aggregations).to_pylist()
    )
    return rows


def _no_observations() -> list[int]:
    return [0] * (len(_SECONDS_BUCKETS) + 1)


class AnalyticsMetrics:
    def __init__(self) -> None:
        self.workflow_executions = Counter(
            "workflow_executions",
            "Workflow executions stored, by outcome",
            ["workflow_id", "status"],
            registry=None,
        )
        self.workflow_duration = BatchHistogram(
            "workflow_duration_seconds",
            "Workflow execution duration",
            ["workflow_id"],
            buckets=_SECONDS_BUCKETS,
            registry=None,
        )
        self.llm_cost = Counter(
            "llm_cost", "LLM cost in USD", ["model", "workflow_id"], registry=None
        )
        self.llm_tokens = Counter(
            "llm_tokens", "LLM tokens by model and kind", ["model", "kind"], registry=None
        )
        self.llm_requests = Counter(
            "llm_requests", "LLM calls by model and outcome", ["model", "status"], registry=None
        )
        self.llm_latency = BatchHistogram(
            "llm_latency_seconds",
            "LLM call latency",
            ["model"],
            buckets=_SECONDS_BUCKETS,
            registry=None,
        )
        self.success_rates = SuccessRates()

        self.stored = Counter(
            "pas_analytics_events_stored",
            "Events stored (new ones; duplicates are counted apart)",
            ["kind", "source"],
            registry=None,
        )
        self.duplicates = Counter(
            "pas_analytics_events_duplicate",
            "Events received again and not stored twice",
            ["kind"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "pas_analytics_events_dead_lettered",
            "Kafka records sent to the analytics DLQ: they did not decode, or the store "
            "refused them (reason store_refused)",
            ["topic", "reason"],
            registry=None,
        )
        self.ignored = Counter(
            "pas_analytics_events_ignored",
            "Kafka records that decode but are not outcomes (other workflow event types)",
            ["topic"],
            registry=None,
        )
        self.usage_read = Counter(
            "pas_analytics_usage_records_read",
            "Usage records read from Kafka, by reader: arrow (straight into a table, where the "
            "store takes one and the batch allows it) or msgspec",
            ["reader"],
            registry=None,
        )
        self.lag = Gauge(
            "pas_analytics_consumer_lag",
            "Records behind the end of each partition, after the last commit",
            ["topic", "partition"],
            registry=None,
        )
        self.rolled_up = Counter(
            "pas_analytics_rows_rolled_up",
            "Raw rows folded into hourly aggregates and deleted",
            ["kind"],
            registry=None,
        )
        for kind in ("usage", "runs"):
            self.duplicates.labels(kind)
            self.rolled_up.labels(kind)
        for reader in ("arrow", "msgspec"):
            self.usage_read.labels(reader)

    @property
    def collectors(self) -> list[Collector]:
        return [
            self.workflow_executions,
            self.workflow_duration,
            self.llm_cost,
            self.llm_tokens,
            self.llm_requests,
            self.llm_latency,
            self.success_rates,
            self.stored,
            self.duplicates,
            self.dead_lettered,
            self.ignored,
            self.usage_read,
            self.lag,
            self.rolled_up,
        ]

    def count_duplicates(self, kind: str, count: int) -> None:
        """Count ``count`` rows of ``kind`` (``usage`` or ``runs``) that came again."""
        self.duplicates.labels(kind).inc(count)

    def count_usage(self, new: pa.Table, source: str) -> None:
        """Count the new events of a write (a usage table)."""
        self.stored.labels("usage", source).inc(new.num_rows)
        if not new.num_rows:
            return
        # Summed per label set in Arrow: one grouped aggregation a metric, whatever the batch.
        model = new.column("model")
        workflow = pc.fill_null(new.column("workflow_id"), "")
        seconds = pc.divide(new.column("latency_ms"), 1000.0)
        labelled = pa.table(
            {
                "model": model,
                "workflow_id": workflow,
                "status": new.column("status"),
                "cost_usd": new.column("cost_usd"),
                "prompt": new.column("prompt_tokens"),
                "completion": new.column("completion_tokens"),
                "seconds": seconds,
                "bucket": _bucket_of(seconds, _SECONDS_BUCKETS),
            }
        )
        for row in _grouped(labelled, ["model", "workflow_id"], [("cost_usd", "sum")]):
            self.llm_cost.labels(row["model"], row["workflow_id"]).inc(row["cost_usd_sum"])
        sums = [("prompt", "sum"), ("completion", "sum"), ("seconds", "sum")]
        latency: dict[str, float] = {}
        for row in _grouped(labelled, ["model"], sums):
            self.llm_tokens.labels(row["model"], "prompt").inc(row["prompt_sum"])
            self.llm_tokens.labels(row["model"], "completion").inc(row["completion_sum"])
            latency[row["model"]] = row["seconds_sum"]
        for row in _grouped(labelled, ["model", "status"], [("status", "count")]):
            self.llm_requests.labels(row["model"], row["status"]).inc(row["status_count"])
        buckets: defaultdict[str, list[int]] = defaultdict(
            lambda: [0] * (len(_SECONDS_BUCKETS) + 1)
        )
        for row in _grouped(labelled, ["model", "bucket"], [("bucket", "count")]):
            buckets[row["model"]][row["bucket"]] = row["bucket_count"]
        for name, counts in buckets.items():
            self.llm_latency.labels(name).observe_batch(counts, latency[name])

    def count_runs(self, runs: Sequence[WorkflowRun], source: str) -> None:
        """Count the new runs of a write: once per label set, not per run (a ``labels()``
        look-up costs more than the rest of a run's counting)."""
        self.stored.labels("runs", source).inc(len(runs))
        for (workflow_id, status), count in collections.Counter(
            (run.workflow_id, run.status) for run in runs
        ).items():
            self.workflow_executions.labels(workflow_id, status).inc(count)
        durations: defaultdict[str, list[float]] = defaultdict(list)
        for run in runs:
            if run.duration_ms is not None:
                durations[run.workflow_id].append(run.duration_ms / 1000)
        for workflow_id, seconds in durations.items():
            self.workflow_duration.labels(workflow_id).observe_batch(
                _bucket_counts(seconds, _SECONDS_BUCKETS), math.fsum(seconds)
            )


async def refresh_success_rates_forever(
    store: AnalyticsStore, rates: SuccessRates, window_s: float, interval_s: float
) -> None:
    """Keep ``workflow_success_rate`` at the store's answer over the last ``window_s``."""
    while True:
        now = datetime.now(UTC)
        try:
            rates.rates = await store.success_rates(
                TimeWindow(now - timedelta(seconds=window_s), now)
            )
        except Exception:
            logger.exception("reading success rates failed; keeping the last ones")
        await asyncio.sleep(interval_s)
