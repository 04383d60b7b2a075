"""Keep a service's startup heap out of the garbage collector's full passes.

What a service has loaded once it has started (modules, its app, its clients, caches) lives as
long as the process. A full collection otherwise walks all of it again every time the young
objects of the work (records, requests, futures) pile up enough to trigger one: about a tenth
of the CPU of the Kafka LLM processor and of the analytics collector when they are busy
(docs/benchmarks.md). :func:`gc.freeze` moves those objects to a generation the collector never
scans; what is allocated later is collected as before.
"""

from __future__ import annotations

import gc

from litestar import Litestar


def freeze_startup_heap(_: Litestar | None = None) -> None:
    """Collect once, then freeze what is left (an ``on_startup`` hook, run after the app's
    lifespans have opened what the service owns)."""
    gc.collect()
    gc.freeze()


def unfreeze_heap(_: Litestar | None = None) -> None:
    """Give the frozen objects back to the collector (an ``on_shutdown`` hook), so that an app
    started and stopped inside a longer-lived process (tests, benches) can still be freed."""
    gc.unfreeze()
