"""How long each run has run: the sum of its stretches, not the time from its first start.

A run's stretch lasts from the moment its task takes a slot and runs the graph until it stops
(ends, is interrupted, drained or cancelled). Between stretches it waits: for a person's
answer, for a runner to take it after a crash or a stop. Those waits are no part of how long
it ran (a duration, an experiment's latency). Each stretch is timed on this process's
monotonic clock and added to the ``running_ms`` the run was recorded with when it began; every
record written while it lasts carries the sum so far, so a stretch a crash cuts counts up to
its last recorded step.
"""

from __future__ import annotations

import time

from libs.common.schemas.workflows import RunStatus


class RunningTimes:
    def __init__(self) -> None:
        self._stretches: dict[str, tuple[float, float]] = {}
        """run id -> (when its stretch began, monotonic s; its running_ms before it)."""

    def begin(self, run: RunStatus) -> None:
        """A stretch of ``run`` begins. A run recorded before ``running_ms`` was kept has no
        sum to add to: it is not timed (its duration stays ``finished_at - started_at``)."""
        if run.running_ms is not None:
            self._stretches[run.run_id] = (time.monotonic(), run.running_ms)

    def so_far(self, run_id: str) -> dict[str, float]:
        """``running_ms`` as of now, as a change to the run's record (none if not timed)."""
        stretch = self._stretches.get(run_id)
        if stretch is None:
            return {}
        began, before = stretch
        return {"running_ms": before + (time.monotonic() - began) * 1000}

    def end(self, run_id: str) -> None:
        self._stretches.pop(run_id, None)
