"""Prometheus counters of the router's decisions, fallbacks, latency, tokens and spend."""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.registry import Collector


class RouterMetrics:
    def __init__(self) -> None:
        self.decisions = Counter(
            "pas_router_decisions",
            "Requests served, by candidate chosen",
            ["provider", "model", "strategy"],
            registry=None,
        )
        self.fallbacks = Counter(
            "pas_router_fallbacks",
            "Candidates given up on during a request",
            ["provider", "model"],
            registry=None,
        )
        self.latency = Histogram(
            "pas_router_upstream_seconds",
            "Upstream answer time (to the end of the answer)",
            ["provider", "model"],
            registry=None,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter(
            "pas_router_tokens",
            "Tokens through the router",
            ["provider", "model", "kind"],
            registry=None,
        )
        self.cost = Counter(
            "pas_router_cost_usd",
            "Spend through the router in USD",
            ["provider", "model"],
            registry=None,
        )

    @property
    def collectors(self) -> list[Collector]:
        return [self.decisions, self.fallbacks, self.latency, self.tokens, self.cost]
