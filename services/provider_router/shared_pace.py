"""One pace for the routers sharing a database: a provider's ``rpm`` and ``tpm`` are kept by
all of them together, and a pause one of them was asked for (a 429's ``Retry-After``) is kept
by all.

Every ``sync_s`` (``ROUTER_SPEND_SYNC_S``, as spend) a router stores its calls per candidate
and second since the last round and any pause it was asked for, then reads back the other
routers' last minute and the pauses still running, which each candidate's :class:`RateWindow`
adds to its own count. The request path only counts in memory. So the routers together may
pass a limit by what they send within one round before they hear of each other; a router
alone on its database only stores and reads its own rows. While the database is away, each
router keeps its own pace and tells the others when it answers again.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import suppress

import structlog

from services.provider_router.rate_limits import WINDOW_S, RateWindow
from services.provider_router.store import SpendStore

logger = structlog.get_logger("pas.router.pace")


def router_name() -> str:
    """This router process among those on the database: host, process, and a random part
    (a restarted process is a new router; its old rows leave the minute)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class SharedPace:
    def __init__(
        self,
        store: SpendStore,
        windows: Mapping[str, RateWindow],
        *,
        sync_s: float,
        router: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._windows = windows
        self._sync_s = sync_s
        self.router = router or router_name()
        self._wall = wall
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Share in the background until :meth:`stop` (the store is open)."""
        self._stopping = asyncio.Event()  # in the loop that serves
        self._task = asyncio.create_task(self._share_until_stopped(), name="pace-sharing")

    async def stop(self) -> None:
        """One last round, so the others count what this router sent before it went."""
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def share(self) -> None:
        """Tell the others this router's calls and pauses; hear theirs."""
        taken = {cid: window.take_unshared(cid) for cid, window in self._windows.items()}
        seconds = [each for told, _ in taken.values() for each in told]
        pauses = [pause for _, pause in taken.values() if pause is not None]
        now = self._wall()
        try:
            if seconds or pauses:  # an idle router writes nothing (old rows go with a write)
                await self._store.share_pace(
                    self.router, seconds, pauses, before=int(now - 2 * WINDOW_S)
                )
        except BaseException:
            for cid, (told, pause) in taken.items():
                if cid in self._windows:
                    self._windows[cid].keep_unshared(told, pause)
            raise
        others, running = await self._store.others_pace(
            self.router, since=int(now - WINDOW_S) + 1, now=now
        )
        latest = {pause.candidate: pause for pause in running}
        for cid, window in self._windows.items():
            window.heard(*others.get(cid, (0, 0)), pause=latest.get(cid))

    async def _share_until_stopped(self) -> None:
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sync_s)
            stopping = self._stopping.is_set()  # then this round is the last
            try:
                await self.share()
            except Exception as exc:  # the database is away: keep counting alone, try again
                logger.warning("pace not shared yet; will retry", error=str(exc))
                for window in self._windows.values():
                    window.heard(0, 0)  # what was heard ages; no longer counted
            if stopping:
                return
