"""The agent registry app: ``uvicorn services.registry.registry_service:app --port 6121``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
import structlog
from litestar import Litestar

from libs.common.kit import HealthReport, create_service
from libs.common.kit.shutdown import notice_shutdown
from libs.common.settings import build_or_exit, env_names
from services.registry.catalog import Catalog
from services.registry.liveness import check_agents_forever, reap_forever
from services.registry.metrics import CatalogCollector
from services.registry.routes import RegistryController
from services.registry.settings import RegistrySettings
from services.registry.store import store_for_url

logger = structlog.get_logger("pas.registry")


def create_app(settings: RegistrySettings) -> Litestar:
    store = store_for_url(
        settings.database_url, variable=env_names(RegistrySettings, "database_url")[0]
    )
    catalog = Catalog(
        store,
        default_ttl_s=settings.default_ttl_s,
        deregister_critical_after_s=settings.deregister_critical_after_s,
    )
    loaded = asyncio.Event()

    @asynccontextmanager
    async def release_watchers_on_signal(_: Litestar) -> AsyncIterator[None]:
        async with notice_shutdown(catalog.release_watchers):
            yield

    @asynccontextmanager
    async def run_catalog(_: Litestar) -> AsyncIterator[None]:
        await store.open()
        await catalog.load()
        loaded.set()
        loops = [asyncio.create_task(reap_forever(catalog, settings.reap_interval_s))]
        http = httpx.AsyncClient(timeout=settings.active_check_timeout_s)
        if settings.active_check_interval_s > 0:
            loops.append(
                asyncio.create_task(
                    check_agents_forever(catalog, http, settings.active_check_interval_s)
                )
            )
        logger.info("registry started", settings=settings.redacted())
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
            for loop in loops:
                with suppress(asyncio.CancelledError):
                    await loop
            await http.aclose()
            await store.close()
            logger.info("registry stopped", index=catalog.index)

    async def health() -> HealthReport:
        if not loaded.is_set():
            return HealthReport(status="unhealthy", details={"catalog": "not loaded yet"})
        return HealthReport(details={"agents": catalog.count_by_status(), "index": catalog.index})

    return create_service(
        name="registry",
        settings=settings,
        description="Agent registry: register, discover and watch PAS agents.",
        route_handlers=[RegistryController],
        dependencies={"catalog": catalog, "settings": settings},
        lifespan=[run_catalog, release_watchers_on_signal],
        health_check=health,
        collectors=[CatalogCollector(catalog)],
        write_token=settings.token,
    )


app = build_or_exit(create_app, RegistrySettings)
