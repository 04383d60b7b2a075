"""Prometheus metrics of the router: counters of its decisions, fallbacks, latency, tokens,
spend and answer cache, and gauges of each candidate's circuit, each provider's spend against
its budget and the cache's memory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import get_args

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from services.provider_router.answer_cache import AnswerCache, Outcome
from services.provider_router.circuit_breaker import CircuitState
from services.provider_router.desk_keys import KeyGate
from services.provider_router.pool import CandidatePool


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
            "Tokens through the router; kind: prompt, completion, and of the prompt's, "
            "cache_read and cache_write (a provider's prompt cache)",
            ["provider", "model", "kind"],
            registry=None,
        )
        self.cost = Counter(
            "pas_router_cost_usd",
            "Spend through the router in USD",
            ["provider", "model"],
            registry=None,
        )

        self.cache = Counter(
            "pas_router_cache",
            "Requests the answer cache was asked for, by outcome (hit, miss, coalesced)",
            ["operation", "outcome"],
            registry=None,
        )
        # Every series from the start, at 0: a rate over them is 0, not missing, before use.
        for operation in ("chat", "embeddings"):
            for outcome in get_args(Outcome):
                self.cache.labels(operation, outcome)

    @property
    def collectors(self) -> list[Collector]:
        return [self.decisions, self.fallbacks, self.latency, self.tokens, self.cost, self.cache]


class PoolCollector(Collector):
    """Circuits, budgets and each candidate's pace, read from the pool when Prometheus scrapes
    (what the alerts on an open circuit and on a budget near its end look at), and each desk
    key's spend and pace."""

    def __init__(self, pool: CandidatePool, keys: KeyGate | None = None) -> None:
        self._pool = pool
        self._keys = keys

    def collect(self) -> Iterator[GaugeMetricFamily]:
        circuits = GaugeMetricFamily(
            "pas_router_circuit_state",
            "1 for the state each candidate's circuit is in, 0 for the others",
            labels=["candidate", "provider", "model", "state"],
        )
        spent = GaugeMetricFamily(
            "pas_router_spent_today_usd",
            "Spend this UTC day per provider, by every router on the database",
            labels=["provider"],
        )
        budgets = GaugeMetricFamily(
            "pas_router_daily_budget_usd",
            "Daily budget per provider (only providers that have one)",
            labels=["provider"],
        )
        minute = GaugeMetricFamily(
            "pas_router_last_minute",
            "Requests or tokens each candidate took in the last minute (kind), against its "
            "provider's rpm and tpm",
            labels=["candidate", "provider", "model", "kind"],
        )
        waits = GaugeMetricFamily(
            "pas_router_asked_to_wait_seconds",
            "What is left of a pause a provider asked for (a 429's Retry-After); 0: none",
            labels=["candidate", "provider", "model"],
        )
        providers: dict[str, float | None] = {}
        for candidate in self._pool.all():
            named = [candidate.id, candidate.provider, candidate.model]
            pace = self._pool.rates[candidate.id]
            requests, tokens = pace.counts()
            minute.add_metric([*named, "requests"], requests)
            minute.add_metric([*named, "tokens"], tokens)
            waits.add_metric(named, pace.paused_for() or 0.0)
            state = self._pool.breakers[candidate.id].state
            for each in get_args(CircuitState):
                circuits.add_metric(
                    [candidate.id, candidate.provider, candidate.model, each],
                    1.0 if each == state else 0.0,
                )
            # A budget is the provider's: every candidate of a provider carries the same one.
            providers.setdefault(candidate.provider, None)
            if candidate.daily_budget_usd is not None:
                providers[candidate.provider] = candidate.daily_budget_usd
        for provider, budget in sorted(providers.items()):
            spent.add_metric([provider], self._pool.ledger.spent_today(provider))
            if budget is not None:
                budgets.add_metric([provider], budget)
        yield circuits
        yield spent
        yield budgets
        yield minute
        yield waits
        if self._keys is not None:
            yield from self._key_families(self._keys)

    @staticmethod
    def _key_families(keys: KeyGate) -> Iterator[GaugeMetricFamily]:
        spent = GaugeMetricFamily(
            "pas_router_key_spent_today_usd",
            "Spend this UTC day per desk key, by every router on the database",
            labels=["key"],
        )
        budgets = GaugeMetricFamily(
            "pas_router_key_daily_budget_usd",
            "Daily budget per desk key (only keys that have one)",
            labels=["key"],
        )
        minute = GaugeMetricFamily(
            "pas_router_key_last_minute",
            "Requests or tokens each desk key sent in the last minute (kind), against its rpm "
            "and tpm",
            labels=["key", "kind"],
        )
        expiries = GaugeMetricFamily(
            "pas_router_key_expiry_timestamp_seconds",
            "When each desk key's token stops being taken, Unix time (only keys that expire)",
            labels=["key"],
        )
        for key in sorted(keys.keys, key=lambda k: k.name):
            spent.add_metric([key.name], keys.spent_today(key))
            if key.daily_budget_usd is not None:
                budgets.add_metric([key.name], key.daily_budget_usd)
            requests, tokens = keys.windows[key.pace_id].counts()
            minute.add_metric([key.name, "requests"], requests)
            minute.add_metric([key.name, "tokens"], tokens)
            if key.expires is not None:
                expiries.add_metric([key.name], key.expires.timestamp())
        yield spent
        yield budgets
        yield minute
        yield expiries


def cache_bytes_gauge(answers: AnswerCache) -> Gauge:
    """What the kept answers take, read when Prometheus scrapes."""
    gauge = Gauge(
        "pas_router_cache_bytes", "Memory the answer cache's kept answers take", registry=None
    )
    gauge.set_function(lambda: answers.bytes)
    return gauge
