"""How many answers a service takes at once: its ``parallel`` slots and up to ``max_waiting``
requests waiting for one. Past that a request is refused at once with 429 and ``Retry-After``
(the time the ones ahead of it should take), as OpenAI answers at its rate limits and Ollama
past ``OLLAMA_MAX_QUEUE``: a caller with somewhere else to go (the provider router) goes there,
one without waits as long as asked, and nothing piles up until the timeout turns it into 504s.
"""

from __future__ import annotations

import math

from prometheus_client import Gauge
from prometheus_client.registry import Collector

from libs.common.errors import PASError


class Overloaded(PASError):
    """Every slot is busy and as many requests wait as the service lets wait."""

    status_code = 429

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class AdmissionGate:
    """Counts answers under way (in a slot or waiting for one); ``enter`` refuses one more
    past ``slots + max_waiting``. The expected wait comes from a moving average of how long
    answers take (``alpha``: the newest's weight)."""

    def __init__(self, slots: int, max_waiting: int, *, alpha: float = 0.2) -> None:
        self.slots = slots
        self.max_waiting = max_waiting
        self.under_way = 0
        self._alpha = alpha
        self._answer_s: float | None = None
        self.gauge = Gauge(
            "pas_llm_requests_under_way",
            "Answers being made or waiting for a slot",
            registry=None,
        )
        self.gauge.set_function(lambda: self.under_way)

    @property
    def collectors(self) -> list[Collector]:
        return [self.gauge]

    def enter(self) -> Admitted:
        """The request's place, to leave when its answer ends; or ``Overloaded``."""
        if self.under_way >= self.slots + self.max_waiting:
            waiting = self.under_way - self.slots
            # The waiting ones go through the slots a batch at a time.
            wait_s = (self._answer_s or 1.0) * (waiting // self.slots + 1)
            raise Overloaded(
                f"the model is busy: every slot ({self.slots}) answering and {waiting} "
                f"waiting, the most this service lets wait; try again in {math.ceil(wait_s)} s",
                wait_s,
            )
        self.under_way += 1
        return Admitted(self)

    def _leave(self, answer_s: float | None) -> None:
        self.under_way -= 1
        if answer_s is not None:
            self._answer_s = (
                answer_s
                if self._answer_s is None
                else self._alpha * answer_s + (1 - self._alpha) * self._answer_s
            )


class Admitted:
    """One request's place at the gate."""

    def __init__(self, gate: AdmissionGate) -> None:
        self._gate: AdmissionGate | None = gate

    def leave(self, answer_s: float | None = None) -> None:
        """The answer ended (``answer_s``: how long it took, when it was made); once, however
        many times it is said."""
        if self._gate is not None:
            self._gate._leave(answer_s)
            self._gate = None
