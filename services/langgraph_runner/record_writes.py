"""Run records written in order, in the background where the run need not wait.

A run's record changes at every node; waiting for each write would hold up the next node. So
each run's writes go through one task of its own, in order, and only the latest version still
waiting is written (an older one would be overwritten at once). A caller that must know its
change is stored (a status change, before it is announced) awaits :meth:`OrderedWrites.save`,
which returns once that write and every earlier one of the run are stored.
"""

from __future__ import annotations

import asyncio

import structlog

from services.langgraph_runner.store import RunRecord, RunStore

logger = structlog.get_logger("pas.runner")


def _log_write_failure(writer: asyncio.Task[None]) -> None:
    if not writer.cancelled() and writer.exception() is not None:
        logger.error("a run record could not be stored", error=repr(writer.exception()))


class OrderedWrites:
    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._unwritten: dict[str, RunRecord] = {}
        self._writers: dict[str, asyncio.Task[None]] = {}

    async def save(self, record: RunRecord) -> None:
        """Write ``record`` and wait until it (and every earlier write of the run) is stored.
        Shielded: a cancelled caller does not cut the write short."""
        await asyncio.shield(self._write(record))

    def save_soon(self, record: RunRecord) -> None:
        """Write ``record`` without waiting."""
        self._write(record).add_done_callback(_log_write_failure)

    async def drain(self) -> None:
        """Until every write asked for so far is stored (or has failed)."""
        await asyncio.gather(*self._writers.values(), return_exceptions=True)

    def _write(self, record: RunRecord) -> asyncio.Task[None]:
        run_id = record.run.run_id
        self._unwritten[run_id] = record
        writer = self._writers.get(run_id)
        if writer is None:
            writer = self._writers[run_id] = asyncio.create_task(self._write_out(run_id))
        return writer

    async def _write_out(self, run_id: str) -> None:
        try:
            while (record := self._unwritten.pop(run_id, None)) is not None:
                await self._store.save(record)
        finally:
            del self._writers[run_id]
