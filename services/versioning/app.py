"""The version manager app: ``uvicorn services.versioning.app:app --port 6140``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import structlog
from litestar import Litestar

from libs.common.kafka.records import run_until_stopped
from libs.common.kit import HealthReport, create_service
from libs.common.settings import build_or_exit
from services.versioning.catalog import VersionCatalog
from services.versioning.experiment_routes import ExperimentController
from services.versioning.experiment_store import ExperimentStore
from services.versioning.experiments import ExperimentBook
from services.versioning.git_remote import RemoteAccess
from services.versioning.git_repository import Identity, WorkflowRepository
from services.versioning.metrics import VersioningMetrics
from services.versioning.outcome_consumer import OutcomeConsumer
from services.versioning.remote_push import RemotePusher
from services.versioning.settings import VersioningSettings
from services.versioning.workflow_routes import WorkflowController

logger = structlog.get_logger("pas.versioning")


def create_app(settings: VersioningSettings) -> Litestar:
    metrics = VersioningMetrics()
    repo_path = Path(settings.repo_path)
    committer = Identity(settings.committer_name, settings.committer_email)
    remote = RemoteAccess.parse(settings.remote) if settings.remote else None
    pusher = RemotePusher(repo_path, settings.branch, remote, metrics) if remote else None
    catalog = VersionCatalog(
        WorkflowRepository(repo_path, branch=settings.branch, committer=committer, remote=remote),
        committer=committer,
        metrics=metrics,
        cache_size=settings.cache_size,
        on_change=pusher.request if pusher else lambda: None,
    )
    store = ExperimentStore(settings.database_file())
    book = ExperimentBook(store, catalog, metrics)
    consumer = OutcomeConsumer(settings, book, metrics) if settings.bootstrap_servers else None
    loaded = asyncio.Event()

    @asynccontextmanager
    async def run_versioning(_: Litestar) -> AsyncIterator[None]:
        await catalog.open()
        await store.open()
        await book.load()
        loaded.set()
        stop = asyncio.Event()
        loops: list[asyncio.Task[None]] = []
        if pusher is not None:
            loops.append(asyncio.create_task(pusher.run_forever(), name="versioning-push"))
        consuming = (
            asyncio.create_task(
                run_until_stopped(consumer, stop, name="outcome consumer"),
                name="versioning-outcomes",
            )
            if consumer is not None
            else None
        )
        logger.info("version manager started", settings=settings.redacted())
        try:
            yield
        finally:
            stop.set()
            if consuming is not None:
                await consuming
            for loop in loops:
                loop.cancel()
                with suppress(asyncio.CancelledError):
                    await loop
            await store.close()
            await catalog.close()
            logger.info("version manager stopped", head=catalog.head)

    async def health() -> HealthReport:
        if not loaded.is_set():
            return HealthReport(status="unhealthy", details={"repository": "not loaded yet"})
        details: dict[str, object] = {
            "repository": str(repo_path),
            "branch": settings.branch,
            "head": catalog.head,
            "workflows": catalog.workflow_count(),
            "versions": catalog.version_count(),
            "experiments_running": book.running_count(),
        }
        degraded = False
        if pusher is not None:
            details["push"] = pusher.status()
            degraded |= pusher.last_error is not None
        if consumer is not None:
            details["outcomes_consumer"] = {
                "topic": settings.results_topic,
                "connected": consumer.connected,
                "consumed": consumer.consumed,
            }
            degraded |= not consumer.connected
        return HealthReport(status="degraded" if degraded else "healthy", details=details)

    def state() -> dict[str, int]:
        return {
            "workflows": catalog.workflow_count(),
            "versions": catalog.version_count(),
            "experiments_running": book.running_count(),
        }

    return create_service(
        name="versioning",
        settings=settings,
        description="Version manager: git-backed workflow versions, aliases, rollback, "
        "compare and A/B tests.",
        route_handlers=[WorkflowController, ExperimentController],
        dependencies={"catalog": catalog, "book": book, "settings": settings},
        lifespan=[run_versioning],
        health_check=health,
        collectors=metrics.collectors(state),
        write_token=settings.token,
    )


app = build_or_exit(create_app, VersioningSettings)
