"""Keeping this runner's leases: every ``renew_s`` it extends the leases of the runs it runs
(one statement, :meth:`RunStore.renew`), stops those another replica took over meanwhile, and
claims runs whose lease expired: unfinished ones as many as it has room for, ended ones whose
outcome is to be reported all (they need no slot). The lease rule itself (who may write a run,
and when a lease counts as expired) is the store's (``store.py``); resuming what is claimed is
the run manager's (``runs.py``).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

import structlog

from services.langgraph_runner.store import (
    ENDED_CLAIM_BATCH,
    UNFINISHED_STATUSES,
    Claimed,
    RunStore,
)

logger = structlog.get_logger("pas.runner")


class LeasedRuns(Protocol):
    """What the keeper asks of the runs this runner holds."""

    def running(self) -> list[str]:
        """The runs with a live task here."""
        ...

    def room(self) -> int | None:
        """How many more runs this runner takes now; None while it shuts down (it takes
        nothing then, not even ended runs to report)."""
        ...

    async def resume_claimed(self, claimed: Claimed) -> bool:
        """Run what was claimed (or report it, if it ended); whether a run was resumed."""
        ...

    def lose(self, run_id: str) -> None:
        """Stop the run here without recording anything: another replica runs it now."""
        ...


class LeaseKeeper:
    def __init__(self, store: RunStore, instance: str, renew_s: float, runs: LeasedRuns) -> None:
        self._store = store
        self._instance = instance
        self._renew_s = renew_s
        self._runs = runs
        self._keeping: asyncio.Task[None] | None = None

    async def take_over(self, *, own_too: bool = False) -> int:
        """Claim runs whose lease expired (with ``own_too``, also those leased to this name:
        this runner starting again): unfinished ones as many as there is room for, ended ones
        (to report) all; the number resumed."""
        resumed = 0
        while (room := self._runs.room()) is not None:
            claimed = await self._store.claim(self._instance, limit=room, own_too=own_too)
            for found in claimed:
                if await self._runs.resume_claimed(found):
                    resumed += 1
            ended = [c for c in claimed if c.record.run.status not in UNFINISHED_STATUSES]
            if len(ended) < ENDED_CLAIM_BATCH:
                break
            own_too = False  # what was leased to this name was claimed the first time
        return resumed

    def keep(self) -> None:
        """Renew and take over in the background until :meth:`release`."""
        self._keeping = asyncio.create_task(self._keep(), name="run leases")

    async def release(self) -> None:
        """Stop renewing and let go of every lease, so that another replica takes this one's
        unfinished runs at once."""
        if self._keeping is not None:
            self._keeping.cancel()
            await asyncio.gather(self._keeping, return_exceptions=True)
            self._keeping = None
        released = await self._store.release(self._instance)
        logger.info("leases released", runs=released)

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self._renew_s)
            try:
                await self._renew()
                await self.take_over()
            except Exception:
                logger.exception("leases could not be renewed or taken over; trying again")

    async def _renew(self) -> None:
        running = self._runs.running()
        renewed = await self._store.renew(self._instance, running)
        for run_id in running:
            if run_id in renewed:
                continue
            current = await self._store.get(run_id)
            if (
                current is None
                or current.owner == self._instance
                or current.run.status not in UNFINISHED_STATUSES
            ):
                continue  # not leased now (it settled, or is being resumed): still ours
            # Our lease expired (this process stalled) and another replica resumed the run:
            # it is theirs; its writes from here are fenced off anyway.
            logger.warning(
                "run taken over by another runner; stopping it here",
                run_id=run_id,
                owner=current.owner,
            )
            self._runs.lose(run_id)
