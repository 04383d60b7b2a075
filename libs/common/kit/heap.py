"""Tune the garbage collector for a long-running service once it has started.

- What a service has loaded once it has started (modules, its app, its clients, caches) lives as
  long as the process. A full collection otherwise walks all of it again every time the young
  objects of the work (records, requests, futures) pile up enough to trigger one: about a tenth
  of the CPU of the Kafka LLM processor and of the analytics collector when they are busy.
  :func:`gc.freeze` moves those objects to a generation the collector never scans; what is
  allocated later is collected as before.
- A young collection runs every 700 allocations by default, and a busy service allocates
  futures, tasks and records by the thousand: at 10,000 the processor handled a tenth more
  documents a second against an instant backend (docs/benchmarks.md). Each young collection
  then has more objects to look at, but there are far fewer of them.
- Before freezing, only the young generations are collected: a full collection found 0 to 640
  objects of garbage in the runner, router, collector and LLM services at startup (in 65 to 95
  ms), too few to matter frozen. It walks the whole heap of the process, and an app started
  inside a larger one walks that: about a fifth of the test suite's CPU went to it, the heap of
  a pytest worker walked each time a test started an app (py-spy, docs/benchmarks.md).
"""

from __future__ import annotations

import gc
from typing import Final

from litestar import Litestar

YOUNG_COLLECTION_THRESHOLD: Final = 10_000
"""Allocations (less deallocations) between two collections of the youngest generation."""


class StartupHeap:
    """``settle`` as an ``on_startup`` hook (after the app's lifespans have opened what the
    service owns), ``release`` as an ``on_shutdown`` hook: an app started and stopped inside a
    longer-lived process (tests, benches) leaves the collector as it found it."""

    def __init__(self) -> None:
        self._thresholds: tuple[int, int, int] | None = None

    def settle(self, _: Litestar | None = None) -> None:
        gc.collect(generation=1)
        gc.freeze()
        self._thresholds = gc.get_threshold()
        young, *older = self._thresholds
        gc.set_threshold(max(young, YOUNG_COLLECTION_THRESHOLD), *older)

    def release(self, _: Litestar | None = None) -> None:
        gc.unfreeze()
        if self._thresholds is not None:
            gc.set_threshold(*self._thresholds)
            self._thresholds = None
