"""What the service measures of itself: Prometheus metrics and the figures /info reports."""

from __future__ import annotations

import math
import statistics
from collections import deque
from contextvars import ContextVar
from typing import Any

import msgspec
from litestar import Request
from prometheus_client import Counter, Histogram
from prometheus_client.registry import Collector

from libs.common.schemas.usage import (
    HEADER_USAGE_REPORTED_BY,
    HEADER_WORKFLOW_ID,
    HEADER_WORKFLOW_RUN_ID,
)
from services.llm.backends.base import Completion

_WINDOW = 1000


class Performance(msgspec.Struct, kw_only=True):
    requests_measured: int
    avg_throughput_tok_s: float | None
    avg_latency_ms: float | None
    p95_latency_ms: float | None


class UsageMeter:
    """Counts every answer; keeps the last 1,000 latencies and decode speeds for /info."""

    def __init__(self, model: str) -> None:
        self._model = model
        self.requests = Counter(
            "pas_llm_requests",
            "LLM requests by API endpoint and outcome",
            ["model", "endpoint", "status"],
            registry=None,
        )
        self.tokens = Counter(
            "pas_llm_tokens", "Tokens processed, by kind", ["model", "kind"], registry=None
        )
        self.latency = Histogram(
            "pas_llm_request_duration_seconds",
            "Time to the full answer",
            ["model", "endpoint"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=None,
        )
        self._latencies_ms: deque[float] = deque(maxlen=_WINDOW)
        self._speeds: deque[float] = deque(maxlen=_WINDOW)

    @property
    def collectors(self) -> list[Collector]:
        return [self.requests, self.tokens, self.latency]

    def answered(self, endpoint: str, completion: Completion, elapsed_s: float) -> None:
        self.requests.labels(self._model, endpoint, "ok").inc()
        self.tokens.labels(self._model, "prompt").inc(completion.prompt_tokens)
        self.tokens.labels(self._model, "completion").inc(completion.completion_tokens)
        self.latency.labels(self._model, endpoint).observe(elapsed_s)
        self._latencies_ms.append(elapsed_s * 1000)
        if completion.eval_ns > 0 and completion.completion_tokens > 1:
            self._speeds.append(completion.completion_tokens / (completion.eval_ns / 1e9))

    def embedded(self, endpoint: str, prompt_tokens: int, elapsed_s: float) -> None:
        """An embeddings call: counted and timed, kept out of the answers' latencies."""
        self.requests.labels(self._model, endpoint, "ok").inc()
        self.tokens.labels(self._model, "prompt").inc(prompt_tokens)
        self.latency.labels(self._model, endpoint).observe(elapsed_s)

    def failed(self, endpoint: str, status: int) -> None:
        self.requests.labels(self._model, endpoint, str(status)).inc()

    def performance(self) -> Performance:
        latencies = sorted(self._latencies_ms)
        return Performance(
            requests_measured=len(latencies),
            avg_throughput_tok_s=round(statistics.fmean(self._speeds), 1) if self._speeds else None,
            avg_latency_ms=round(statistics.fmean(latencies), 1) if latencies else None,
            # Nearest rank: the smallest latency at or above 95% of the others.
            p95_latency_ms=round(latencies[math.ceil(len(latencies) * 0.95) - 1], 1)
            if latencies
            else None,
        )


class CallContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the caller said about a call, for its usage event."""

    workflow_id: str | None = None
    run_id: str | None = None
    reported_by: str | None = None
    """Set when the caller (the router) publishes this call's usage itself."""


_NO_CONTEXT = CallContext()
_call_context: ContextVar[CallContext | None] = ContextVar("pas_llm_call", default=None)


def current_call_context() -> CallContext:
    return _call_context.get() or _NO_CONTEXT


async def remember_call_context(request: Request[Any, Any, Any]) -> None:
    """``before_request`` hook of the model endpoints: keep the caller's usage headers for the
    request's task (each request runs in a task of its own, with its own context)."""
    headers = request.headers
    _call_context.set(
        CallContext(
            workflow_id=headers.get(HEADER_WORKFLOW_ID),
            run_id=headers.get(HEADER_WORKFLOW_RUN_ID),
            reported_by=headers.get(HEADER_USAGE_REPORTED_BY),
        )
    )
