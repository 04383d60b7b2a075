"""How candidates are ordered for a request.

- ``cost``: cheapest first (price per 1k input plus output tokens; local agents cost 0).
- ``performance``: lowest measured latency first, then highest tokens/s (EWMA of live calls);
  a candidate never measured goes first, so that every one gets measured.
- ``balanced``: the sum of price and latency, each divided by the largest among the candidates
  (0 = best, 2 = worst); unmeasured latency counts as the best.
- ``prefer_local`` puts local agents before remote ones whatever the strategy.
- Ties go to the candidate with fewer requests in flight, then round-robin.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from services.provider_router.candidates import Candidate
from services.provider_router.live_stats import LiveStats

Strategy = Literal["cost", "performance", "balanced"]


def rank(
    candidates: list[Candidate],
    stats: dict[str, LiveStats],
    strategy: Strategy,
    *,
    prefer_local: bool,
    turn: int = 0,
) -> list[Candidate]:
    """``turn`` counts the caller's requests; it rotates who wins a tie."""
    if not candidates:
        return []
    max_price = max(c.blended_price for c in candidates) or 1.0
    latencies = [s.latency_ms for c in candidates if (s := stats[c.id]).latency_ms is not None]
    max_latency = max(latencies, default=1.0) or 1.0

    def score(c: Candidate) -> tuple[float, float]:
        s = stats[c.id]
        if strategy == "cost":
            return (c.blended_price, 0.0)
        if strategy == "performance":
            return (s.latency_ms or 0.0, -(s.tokens_per_s or 0.0))
        return (c.blended_price / max_price + (s.latency_ms or 0.0) / max_latency, 0.0)

    # Rotating the start spreads ties round-robin; sorted() is stable after that.
    offset = turn % len(candidates)
    rotated = candidates[offset:] + candidates[:offset]
    key: Callable[[Candidate], tuple[bool, tuple[float, float], int]] = lambda c: (  # noqa: E731
        prefer_local and c.kind != "local",
        score(c),
        stats[c.id].in_flight,
    )
    return sorted(rotated, key=key)
