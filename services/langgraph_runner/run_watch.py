"""Who waits for a run: callers that block until it settles (``wait=true``, the Kafka bridge)
and listeners of its server-sent events.

The run manager announces every stored status change (:meth:`RunWatch.announce`) and every
node update (:meth:`RunWatch.broadcast`). A run of another replica changes only in the shared
store, so waiters and listeners also read the store every so often.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress

import msgspec

from libs.common.schemas.workflows import TERMINAL_STATUSES, RunUpdate
from services.langgraph_runner.store import RunRecord

SETTLED_STATUSES = TERMINAL_STATUSES | {"interrupted"}
"""Nothing happens to a run in these states until someone asks."""
_POLL_S = 1.0

ReadRun = Callable[[str], Awaitable[RunRecord]]


def is_settled(record: RunRecord, *, reported: bool = False) -> bool:
    """Nothing will change unless someone asks; with ``reported``, the run's outcome is also
    reported, if it is to be (on ``workflow-results`` for a Kafka-triggered run)."""
    status = record.run.status
    if status == "interrupted":
        return True
    if status not in TERMINAL_STATUSES:
        return False
    return not reported or not record.awaits_report


def status_update(record: RunRecord) -> RunUpdate:
    run = record.run
    detail = None
    if run.status in SETTLED_STATUSES:
        detail = {
            "output": run.output,
            "error": run.error,
            "interrupts": msgspec.to_builtins(run.interrupts),
        }
    return RunUpdate(run_id=run.run_id, status=run.status, step=run.steps, update=detail)


class RunWatch:
    def __init__(self, read: ReadRun) -> None:
        self._read = read
        self._waiters: dict[str, asyncio.Event] = {}
        self._listeners: dict[str, set[asyncio.Queue[RunUpdate]]] = {}

    async def wait(
        self, run_id: str, timeout_s: float | None = None, *, reported: bool = False
    ) -> RunRecord:
        """The run once settled (see :func:`is_settled`), or as it is when ``timeout_s`` ends."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while True:
            # Registered before reading, so that a change in between is not missed.
            changed = self._waiters.setdefault(run_id, asyncio.Event())
            record = await self._read(run_id)
            pause = _POLL_S if deadline is None else min(_POLL_S, deadline - loop.time())
            if is_settled(record, reported=reported) or pause <= 0:
                if self._waiters.get(run_id) is changed and not changed.is_set():
                    del self._waiters[run_id]  # nobody signals a run that is not ours
                return record
            # Polling as well: a run of another replica changes only in the shared store.
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), pause)

    async def updates(self, run_id: str) -> AsyncGenerator[RunUpdate, None]:
        """The run's status now, then every node update and status change until it settles."""
        queue: asyncio.Queue[RunUpdate] = asyncio.Queue()
        listeners = self._listeners.setdefault(run_id, set())
        listeners.add(queue)
        try:
            record = await self._read(run_id)
            yield status_update(record)
            if record.run.status in SETTLED_STATUSES:
                return
            while True:
                try:
                    update = await asyncio.wait_for(queue.get(), _POLL_S * 5)
                except TimeoutError:
                    record = await self._read(run_id)
                    if record.run.status in SETTLED_STATUSES:
                        yield status_update(record)
                        return
                    continue
                yield update
                if update.status in SETTLED_STATUSES:
                    return
        finally:
            listeners.discard(queue)
            if not listeners:
                self._listeners.pop(run_id, None)

    def listened(self, run_id: str) -> bool:
        return run_id in self._listeners

    def announce(self, record: RunRecord) -> None:
        """A stored status change: to listeners, and to waiters."""
        self.broadcast(status_update(record))
        self.signal(record.run.run_id)

    def signal(self, run_id: str) -> None:
        """Waiters of the run look again."""
        changed = self._waiters.pop(run_id, None)
        if changed is not None:
            changed.set()

    def broadcast(self, update: RunUpdate) -> None:
        for queue in self._listeners.get(update.run_id, ()):
            queue.put_nowait(update)
