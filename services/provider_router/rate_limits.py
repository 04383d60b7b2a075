"""A candidate's pace: the requests and tokens it took in the last minute, against the limits
its provider sets (``rpm``, ``tpm`` in the providers file), and the pause a provider asked for
(a 429's ``Retry-After``). A candidate at its limit or paused is passed over for the next one,
before the provider has to refuse anything.

Routers sharing a database keep one pace (``shared_pace.py``): each counts its own calls here
as they happen and adds the others' last minute and pauses as last read, so together they keep
to a provider's limits within a sync interval.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import msgspec

WINDOW_S = 60.0


class PaceSecond(msgspec.Struct, frozen=True):
    """A router's calls to one candidate in one second of wall time (Unix seconds)."""

    candidate: str
    second: int
    requests: int
    tokens: int


class Pause(msgspec.Struct, frozen=True):
    """A provider's request for no calls to a candidate until ``until`` (Unix time)."""

    candidate: str
    until: float
    reason: str


class RateWindow:
    """The last minute of one candidate's calls. ``clock`` is monotonic seconds; ``wall`` is
    Unix time, which routers sharing a pace have in common."""

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self._clock = clock
        self._wall = wall
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._token_sum = 0
        self._paused_until = 0.0
        self._pause_reason = ""
        self._unshared: dict[int, list[int]] = {}
        """Calls not yet told to the other routers: [requests, tokens] per wall second."""
        self._unshared_pause: tuple[float, str] | None = None
        self._others = (0, 0)
        """The other routers' requests and tokens in the last minute, as last read."""

    def started(self) -> None:
        """A request was sent."""
        self._requests.append(self._clock())
        self._unshared.setdefault(int(self._wall()), [0, 0])[0] += 1

    def used(self, tokens: int) -> None:
        """A request's answer said it used ``tokens`` (prompt and completion)."""
        if tokens > 0:
            self._tokens.append((self._clock(), tokens))
            self._token_sum += tokens
            self._unshared.setdefault(int(self._wall()), [0, 0])[1] += tokens

    def pause(self, seconds: float, reason: str) -> None:
        """The provider asked for no request for ``seconds``."""
        if self._pause_until(self._clock() + seconds, reason):
            self._unshared_pause = (self._wall() + seconds, reason)

    def counts(self) -> tuple[int, int]:
        """Requests and tokens in the last minute, by this router and the others."""
        self._forget_old()
        return len(self._requests) + self._others[0], self._token_sum + self._others[1]

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

    def seconds_to_room(self) -> float:
        """Roughly how long until this router's oldest call of the minute leaves it (1 s when
        the minute's calls are all other routers')."""
        self._forget_old()
        firsts = [self._requests[0]] if self._requests else []
        firsts += [self._tokens[0][0]] if self._tokens else []
        return max(1.0, min(firsts) + WINDOW_S - self._clock()) if firsts else 1.0

    def take_unshared(self, candidate: str) -> tuple[list[PaceSecond], Pause | None]:
        """What the other routers have not been told yet, handed over (and forgotten here)."""
        seconds = [PaceSecond(candidate, s, r, t) for s, (r, t) in self._unshared.items()]
        pause = self._unshared_pause and Pause(candidate, *self._unshared_pause)
        self._unshared, self._unshared_pause = {}, None
        return seconds, pause

    def keep_unshared(self, seconds: Sequence[PaceSecond], pause: Pause | None) -> None:
        """Handed over but not stored (the database was away): told next time instead, unless
        it has left the minute by then."""
        horizon = self._wall() - WINDOW_S
        for each in seconds:
            if each.second < horizon:
                continue
            counts = self._unshared.setdefault(each.second, [0, 0])
            counts[0] += each.requests
            counts[1] += each.tokens
        if pause is not None and self._unshared_pause is None:
            self._unshared_pause = (pause.until, pause.reason)

    def heard(self, requests: int, tokens: int, pause: Pause | None = None) -> None:
        """The other routers' last minute, and the latest pause any router was asked for."""
        self._others = (requests, tokens)
        if pause is not None:
            self._pause_until(self._clock() + pause.until - self._wall(), pause.reason)

    def _pause_until(self, until: float, reason: str) -> bool:
        if until <= self._paused_until:
            return False
        self._paused_until, self._pause_reason = until, reason
        return True

    def _forget_old(self) -> None:
        horizon = self._clock() - WINDOW_S
        while self._requests and self._requests[0] <= horizon:
            self._requests.popleft()
        while self._tokens and self._tokens[0][0] <= horizon:
            self._token_sum -= self._tokens.popleft()[1]
