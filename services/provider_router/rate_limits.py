"""A candidate's pace: the requests and tokens it took in the last minute, against the limits
its provider sets (``rpm``, ``tpm`` in the providers file), and the pause a provider asked for
(a 429's ``Retry-After``). A candidate at its limit or paused is passed over for the next one,
before the provider has to refuse anything.

Per router process: routers sharing a provider each keep their own count, so give each a share
of the provider's limits.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0


class RateWindow:
    """The last minute of one candidate's calls. ``clock`` is monotonic seconds."""

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0
        self._paused_until = 0.0
        self._pause_reason = ""

    def started(self) -> None:
        """A request was sent."""
        self._requests.append(self._clock())

    def used(self, tokens: int) -> None:
        """A request's answer said it used ``tokens`` (prompt and completion)."""
        if tokens > 0:
            self._tokens.append((self._clock(), tokens))
            self._token_sum += tokens

    def pause(self, seconds: float, reason: str) -> None:
        """The provider asked for no request for ``seconds``."""
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until, self._pause_reason = until, reason

    def counts(self) -> tuple[int, int]:
        """Requests and tokens in the last minute."""
        self._forget_old()
        return len(self._requests), self._token_sum

    def paused_for(self) -> float | None:
        """Seconds left of a pause the provider asked for, or None."""
        left = self._paused_until - self._clock()
        return left if left > 0 else None

    def why_not(self) -> str | None:
        """Why no request should go now, or None."""
        paused = self.paused_for()
        if paused is not None:
            return f"asked to wait {paused:.1f} s more ({self._pause_reason})"
        requests, tokens = self.counts()
        if self.rpm is not None and requests >= self.rpm:
            return f"at its rate limit: {requests} requests in the last minute (rpm {self.rpm})"
        if self.tpm is not None and tokens >= self.tpm:
            return f"at its rate limit: {tokens} tokens in the last minute (tpm {self.tpm})"
        return None

    def _forget_old(self) -> None:
        horizon = self._clock() - WINDOW_S
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._token_sum -= self._tokens.popleft()[1]
