"""One circuit per candidate: closed, open for a cooldown after N failures, then one probe.

Every call to a candidate holds an :class:`Admission` from :meth:`CircuitBreaker.admit` (None
when the circuit refuses it), used as a context manager, and says how the call went:

- ``succeeded()``: the candidate answered. A 4xx (the caller's problem) counts too: it shows
  the candidate is alive. Closes the circuit.
- ``failed(reason)``: no usable answer (refused connection, timeout, 5xx, 429, a stream that
  broke). Counts towards opening the circuit; a failed probe reopens it for another cooldown.
- neither, when the call ends any other way (the client left mid-stream, the request was
  cancelled, an unexpected error): leaving the ``with`` block, or ``release()``, gives the
  admission back without a verdict. A probe's slot is freed and the circuit stays half-open,
  so the next request probes; nothing is learnt about the candidate, so nothing changes.

So a half-open circuit never waits for a probe that will not report: the only way to hold
the probe slot is to be inside the ``with`` block (or, for a stream, to be the stream being
relayed, which releases it when closed). Cooldowns run on ``time.monotonic``: a step of the
wall clock neither shortens nor stretches one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


class Admission:
    """Leave to make one call to a candidate (its circuit's probe, when ``probe``)."""

    __slots__ = ("_breaker", "_settled", "probe")

    def __init__(self, breaker: CircuitBreaker, *, probe: bool) -> None:
        self._breaker = breaker
        self.probe = probe
        self._settled = False

    def succeeded(self) -> None:
        """The candidate answered (2xx, or a 4xx that is the caller's problem)."""
        self._settled = True
        self._breaker._record_success()

    def failed(self, reason: str) -> None:
        """The candidate gave no usable answer; may be said once per attempt (retries)."""
        self._settled = True
        self._breaker._record_failure(reason, self)

    def release(self) -> None:
        """End without a verdict (no-op once one was given); frees a probe's slot."""
        if not self._settled:
            self._settled = True
            self._breaker._release(self)

    def __enter__(self) -> Admission:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class CircuitBreaker:
    def __init__(
        self,
        *,
        failures_to_open: int,
        cooldown_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = failures_to_open
        self._cooldown_s = cooldown_s
        self._clock = clock
        self.consecutive_failures = 0
        self.open_until: float | None = None
        """On ``clock``'s scale; see :attr:`seconds_to_half_open` for a duration."""
        self._probe: Admission | None = None
        self.last_error: str | None = None

    @property
    def state(self) -> CircuitState:
        if self.open_until is None:
            return "closed"
        return "open" if self._clock() < self.open_until else "half_open"

    @property
    def seconds_to_half_open(self) -> float | None:
        """None while closed; negative once the cooldown is over (half-open)."""
        return None if self.open_until is None else self.open_until - self._clock()

    @property
    def probing(self) -> bool:
        return self._probe is not None

    def admit(self) -> Admission | None:
        """Leave for a call now; in half-open, only for one (the probe) at a time."""
        state = self.state
        if state == "closed":
            return Admission(self, probe=False)
        if state == "half_open" and self._probe is None:
            self._probe = Admission(self, probe=True)
            return self._probe
        return None

    def _record_success(self) -> None:
        self.consecutive_failures = 0
        self.open_until = None
        self._probe = None

    def _record_failure(self, reason: str, admission: Admission) -> None:
        self.last_error = reason
        self.consecutive_failures += 1
        if admission is self._probe or self.consecutive_failures >= self._threshold:
            self.open_until = self._clock() + self._cooldown_s
        if admission is self._probe:
            self._probe = None

    def _release(self, admission: Admission) -> None:
        if admission is self._probe:
            self._probe = None
