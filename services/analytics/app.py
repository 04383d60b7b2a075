"""The analytics collector: ``uvicorn services.analytics.app:app --port 6150``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any

import structlog
from litestar import Litestar
from litestar.static_files import create_static_files_router

from libs.common.kafka.records import run_until_stopped
from libs.common.kit import HealthReport, create_service
from libs.common.settings import build_or_exit
from services.analytics.consumer import EventConsumer
from services.analytics.ingest import Ingestor
from services.analytics.metrics import AnalyticsMetrics, refresh_success_rates_forever
from services.analytics.retention import roll_up_forever
from services.analytics.routes import (
    STATIC_DIR,
    AdminController,
    AnalyticsController,
    DashboardController,
    EventsController,
    ReportsController,
)
from services.analytics.settings import AnalyticsSettings
from services.analytics.store import store_for

logger = structlog.get_logger("pas.analytics")


def create_app(settings: AnalyticsSettings) -> Litestar:
    store = store_for(settings)
    metrics = AnalyticsMetrics()
    ingestor = Ingestor(store, metrics)
    consumer = EventConsumer(settings, ingestor, metrics) if settings.consume else None
    store_open = asyncio.Event()

    @asynccontextmanager
    async def run_collector(_: Litestar) -> AsyncIterator[None]:
        await store.open()
        store_open.set()
        stop = asyncio.Event()
        chores: list[Coroutine[Any, Any, None]] = [
            refresh_success_rates_forever(
                store,
                metrics.success_rates,
                settings.success_rate_window_s,
                settings.gauge_refresh_s,
            )
        ]
        if settings.raw_retention_s > 0:
            chores.append(
                roll_up_forever(
                    store, metrics, settings.raw_retention_s, settings.rollup_interval_s
                )
            )
        background = [asyncio.create_task(chore) for chore in chores]
        consuming = (
            asyncio.create_task(run_until_stopped(consumer, stop, name="consumer loop"))
            if consumer is not None
            else None
        )
        logger.info("analytics collector started", store=store.kind, settings=settings.redacted())
        try:
            yield
        finally:
            stop.set()
            if consuming is not None:
                # The consumer finishes its batch (stored, then committed) before it stops.
                await consuming
            for task in background:
                task.cancel()
            for task in background:
                with suppress(asyncio.CancelledError):
                    await task
            store_open.clear()
            await store.close()
            logger.info("analytics collector stopped")

    async def health() -> HealthReport:
        details: dict[str, object] = {"store": store.kind, "store_open": store_open.is_set()}
        healthy = store_open.is_set()
        if consumer is not None:
            details |= {
                "broker": settings.bootstrap_servers,
                "consuming": consumer.connected,
                "partitions": sorted(f"{tp.topic}/{tp.partition}" for tp in consumer.assigned),
                "last_commit_at": consumer.last_commit_at,
            }
            healthy = healthy and consumer.connected
        return HealthReport(status="healthy" if healthy else "degraded", details=details)

    return create_service(
        name="analytics",
        settings=settings,
        description="Usage, cost and success analytics of PAS workflows and LLM calls.",
        route_handlers=[
            EventsController,
            AnalyticsController,
            ReportsController,
            AdminController,
            DashboardController,
            create_static_files_router(
                path="/dashboard/assets", directories=[STATIC_DIR], name="dashboard-assets"
            ),
        ],
        dependencies={
            "store": store,
            "ingestor": ingestor,
            "metrics": metrics,
            "settings": settings,
        },
        lifespan=[run_collector],
        health_check=health,
        collectors=metrics.collectors,
        write_token=settings.token,
    )


app = build_or_exit(create_app, AnalyticsSettings)
