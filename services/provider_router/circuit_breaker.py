"""One circuit per candidate: closed, open for a cooldown after N failures, then one probe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, *, failures_to_open: int, cooldown_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self._threshold = failures_to_open
        self._cooldown_s = cooldown_s
        self._clock = clock
        self.consecutive_failures = 0
        self.open_until: float | None = None
        self._probing = False
        self.last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        if self.open_until is None:
            return "closed"
        return "open" if self._clock() < self.open_until else "half_open"

    def allows(self) -> bool:
        """Whether a request may go now; in half-open, only the first (the probe) may."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.open_until = None
        self._probing = False

    def failed(self, reason: str) -> None:
        self.last_error = reason
        self.consecutive_failures += 1
        if self._probing or self.consecutive_failures >= self._threshold:
            self.open_until = self._clock() + self._cooldown_s
        self._probing = False
