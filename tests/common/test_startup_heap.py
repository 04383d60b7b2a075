"""While a service runs, its startup heap is kept out of full collections and young collections
are rarer; when it stops, the collector is as it was (libs/common/kit/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.testing import TestClient

from libs.common.kit import ServiceSettings, create_service
from libs.common.kit.heap import YOUNG_COLLECTION_THRESHOLD

OPENED = 20_000


@get("/collector")
async def collector() -> dict[str, int]:
    return {"frozen": gc.get_freeze_count(), "young_threshold": gc.get_threshold()[0]}


def test_the_collector_is_tuned_while_the_service_runs_and_restored_after() -> None:
    held: list[list[int]] = []

    @asynccontextmanager
    async def open_cache(_: Litestar) -> AsyncIterator[None]:
        held.extend([index] for index in range(OPENED))  # tracked objects the service keeps
        yield
        held.clear()

    app = create_service(
        name="heap",
        settings=ServiceSettings(log_level="WARNING"),
        route_handlers=[collector],
        lifespan=[open_cache],
    )
    thresholds = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with TestClient(app) as client:
        running = client.get("/collector").json()
    assert running["frozen"] >= frozen + OPENED
    assert running["young_threshold"] == max(thresholds[0], YOUNG_COLLECTION_THRESHOLD)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


def test_a_service_starting_collects_only_the_young_generations() -> None:
    """A full collection walks the whole heap of the process, which for an app started inside
    a larger one (a test worker, a bench) is that process's; automatic collections are off
    here so that only the ones the service asks for are seen."""
    app = create_service(
        name="heap", settings=ServiceSettings(log_level="WARNING"), route_handlers=[collector]
    )
    generations: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            generations.append(info["generation"])

    enabled = gc.isenabled()
    gc.disable()
    gc.callbacks.append(record)
    try:
        with TestClient(app) as client:
            assert client.get("/collector").status_code == 200
    finally:
        gc.callbacks.remove(record)
        if enabled:
            gc.enable()
    assert generations == [1]
