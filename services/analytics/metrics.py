"""Prometheus metrics: the spec's workflow and LLM cost metrics, and the collector's own.

The spec's names (``workflow_executions_total``, ``workflow_duration_seconds``,
``llm_cost_total``, ``workflow_success_rate``) count what the collector stores, once per event:
duplicates do not move them. ``workflow_success_rate`` is read from the store over a window, so
it survives restarts; the counters start at zero with the process, as counters do.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from libs.common.schemas.usage import UsageEvent, WorkflowRun
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


class AnalyticsMetrics:
    def __init__(self) -> None:
        self.workflow_executions = Counter(
            "workflow_executions",
            "Workflow executions stored, by outcome",
            ["workflow_id", "status"],
            registry=None,
        )
        self.workflow_duration = Histogram(
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
        self.llm_latency = Histogram(
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
            "Kafka records that did not decode, sent to the analytics DLQ",
            ["topic", "reason"],
            registry=None,
        )
        self.ignored = Counter(
            "pas_analytics_events_ignored",
            "Kafka records that decode but are not outcomes (other workflow event types)",
            ["topic"],
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
            self.lag,
            self.rolled_up,
        ]

    def count_usage(self, events: Sequence[UsageEvent], source: str, received: int) -> None:
        self.stored.labels("usage", source).inc(len(events))
        self.duplicates.labels("usage").inc(received - len(events))
        # Summed per label set first: a label lookup costs more than the addition.
        cost: defaultdict[tuple[str, str], float] = defaultdict(float)
        tokens: defaultdict[tuple[str, str], int] = defaultdict(int)
        requests: defaultdict[tuple[str, str], int] = defaultdict(int)
        latency: dict[str, Any] = {}
        for e in events:
            cost[e.model, e.workflow_id or ""] += e.cost_usd
            tokens[e.model, "prompt"] += e.prompt_tokens
            tokens[e.model, "completion"] += e.completion_tokens
            requests[e.model, e.status] += 1
            child = latency.get(e.model)
            if child is None:
                child = latency[e.model] = self.llm_latency.labels(e.model)
            child.observe(e.latency_ms / 1000)
        for labels, usd in cost.items():
            self.llm_cost.labels(*labels).inc(usd)
        for labels, count in tokens.items():
            self.llm_tokens.labels(*labels).inc(count)
        for labels, count in requests.items():
            self.llm_requests.labels(*labels).inc(count)

    def count_runs(self, runs: Sequence[WorkflowRun], source: str, received: int) -> None:
        self.stored.labels("runs", source).inc(len(runs))
        self.duplicates.labels("runs").inc(received - len(runs))
        for run in runs:
            self.workflow_executions.labels(run.workflow_id, run.status).inc()
            if run.duration_ms is not None:
                self.workflow_duration.labels(run.workflow_id).observe(run.duration_ms / 1000)


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
