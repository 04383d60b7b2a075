"""A service's startup heap is kept out of full collections while it runs, and given back when
it stops (libs/common/kit/heap.py)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.testing import TestClient

from libs.common.kit import ServiceSettings, create_service

OPENED = 20_000


@get("/frozen")
async def frozen() -> dict[str, int]:
    return {"frozen": gc.get_freeze_count()}


def test_what_the_lifespans_open_is_frozen_until_the_service_stops() -> None:
    held: list[list[int]] = []

    @asynccontextmanager
    async def open_cache(_: Litestar) -> AsyncIterator[None]:
        held.extend([index] for index in range(OPENED))  # tracked objects the service keeps
        yield
        held.clear()

    app = create_service(
        name="heap",
        settings=ServiceSettings(log_level="WARNING"),
        route_handlers=[frozen],
        lifespan=[open_cache],
    )
    before = gc.get_freeze_count()
    with TestClient(app) as client:
        running = client.get("/frozen").json()["frozen"]
    assert running >= before + OPENED
    assert gc.get_freeze_count() == 0
