"""The providers file and the keys file, taken again when they change, without a restart.

Every ``ROUTER_FILES_POLL_S`` the router looks at each file's modification time and size; a
changed file is read whole and put in place at once (new prices, limits, budgets, providers;
keys added, changed or removed). A file that no longer reads (a TOML error, a bad value, gone)
is refused with the reason in the log and ``pas_router_file_reloads_total{file,outcome}``: the
router goes on with what it had.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from libs.common.errors import SettingsError

logger = structlog.get_logger("pas.router.files")


@dataclass
class WatchedFile:
    """A file, what it was last seen as, and what taking it again does."""

    name: str
    """``providers`` or ``keys``, as the metric labels it."""
    path: str
    take: Callable[[str], None]
    """Read the file and put what it says in place; a SettingsError when it does not read."""
    seen: tuple[int, int] | None = None

    def look(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size


def reloads_counter() -> Counter:
    return Counter(
        "pas_router_file_reloads",
        "The providers or keys file taken again after it changed (outcome: taken, refused)",
        ["file", "outcome"],
        registry=None,
    )


async def follow_files(files: list[WatchedFile], interval_s: float, reloads: Counter) -> None:
    """Take each file again whenever it changes, until cancelled."""
    for watched in files:
        watched.seen = watched.look()
        for outcome in ("taken", "refused"):  # every series from the start, at 0
            reloads.labels(watched.name, outcome)
    while True:
        await asyncio.sleep(interval_s)
        for watched in files:
            now = watched.look()
            if now == watched.seen:
                continue
            watched.seen = now
            problem = None
            try:
                watched.take(watched.path)
            except SettingsError as exc:
                problem = str(exc)
            reloads.labels(watched.name, "refused" if problem else "taken").inc()
            if problem:
                logger.error(
                    "changed file refused; going on with what it said before",
                    file=watched.path,
                    error=problem,
                )
            else:
                logger.info("changed file taken", file=watched.path)


@asynccontextmanager
async def watching(
    files: list[WatchedFile], interval_s: float, reloads: Counter
) -> AsyncIterator[None]:
    """:func:`follow_files` while the app serves (not at all without files or an interval)."""
    if not files or interval_s == 0:
        yield
        return
    task = asyncio.create_task(follow_files(files, interval_s, reloads), name="file-watch")
    try:
        yield
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
