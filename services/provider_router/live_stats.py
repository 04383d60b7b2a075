"""What the router has measured of each candidate: latency, speed, load (EWMA of live calls)."""

from __future__ import annotations


class LiveStats:
    def __init__(self, alpha: float) -> None:
        self._alpha = alpha
        self.latency_ms: float | None = None
        self.tokens_per_s: float | None = None
        self.in_flight = 0
        self.served = 0
        self.failed = 0

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else self._alpha * new + (1 - self._alpha) * old

    def record(self, latency_s: float, completion_tokens: int) -> None:
        self.served += 1
        self.latency_ms = self._blend(self.latency_ms, latency_s * 1000)
        if completion_tokens > 0 and latency_s > 0:
            self.tokens_per_s = self._blend(self.tokens_per_s, completion_tokens / latency_s)
