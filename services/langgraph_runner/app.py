"""The LangGraph runner: ``uvicorn services.langgraph_runner.app:app --port 6130``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from libs.common.clients.versioning import VersioningClient
from libs.common.kafka.records import run_until_stopped
from libs.common.kit import HealthReport, HealthStatus, create_service
from libs.common.settings import build_or_exit
from services.langgraph_runner.bridge import WorkflowBridge
from services.langgraph_runner.catalog import Catalog, build_deps
from services.langgraph_runner.definitions import (
    DefinitionSource,
    RequestedParameters,
    VersionedDefinitions,
)
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.metrics import RunnerMetrics
from services.langgraph_runner.outcomes import (
    OutcomeChannel,
    OutcomeOutbox,
    ResultsTopic,
    VersioningOutcomes,
)
from services.langgraph_runner.persistence import open_persistence
from services.langgraph_runner.routes import RunController, WorkflowController
from services.langgraph_runner.runs import RunManager
from services.langgraph_runner.settings import RunnerSettings

logger = structlog.get_logger("pas.runner")


def create_app(
    settings: RunnerSettings, *, definitions: DefinitionSource | None = None
) -> Litestar:
    metrics = RunnerMetrics()
    llm = LLMGateway(settings)
    catalog = Catalog.from_settings(settings, build_deps(settings, llm))
    versioning = (
        VersioningClient(settings.versioning_url, token=settings.versioning_token)
        if settings.versioning_url
        else None
    )
    if definitions is None:
        definitions = VersionedDefinitions(versioning) if versioning else RequestedParameters()
    runs = RunManager(catalog, settings, definitions, metrics)
    bridge = WorkflowBridge(settings, runs, metrics) if settings.bootstrap_servers else None
    # How runs' ends are reported, and to whom: see outcomes.py.
    channel: OutcomeChannel | None = None
    if settings.bootstrap_servers:
        channel = ResultsTopic(
            settings.bootstrap_servers,
            settings.results_topic,
            metrics,
            max_bytes=settings.max_result_bytes,
        )
    elif versioning is not None:
        channel = VersioningOutcomes(versioning)
    outbox = (
        OutcomeOutbox(runs, channel, interval_s=settings.outbox_interval_s, metrics=metrics)
        if channel
        else None
    )
    ready = asyncio.Event()

    @asynccontextmanager
    async def run_runner(_: Litestar) -> AsyncIterator[None]:
        async with open_persistence(settings) as (checkpointer, store):
            catalog.bind(checkpointer)
            runs.attach(store)
            recovered = await runs.recover()
            stop, stop_reporting = asyncio.Event(), asyncio.Event()
            reporting = (
                asyncio.create_task(
                    run_until_stopped(outbox, stop_reporting, name="outcome outbox")
                )
                if outbox
                else None
            )
            bridging = (
                asyncio.create_task(run_until_stopped(bridge, stop, name="kafka bridge"))
                if bridge
                else None
            )
            ready.set()
            logger.info(
                "runner started",
                workflows=catalog.ids,
                resumed_runs=recovered,
                settings=settings.redacted(),
            )
            try:
                yield
            finally:
                # Runs first (they stop at a step boundary), then the outbox (it reports what
                # finished), then the leases (another replica takes the rest at once), then the
                # bridge (it commits what is reported), then the clients.
                await runs.close()
                stop_reporting.set()
                await _stopped(reporting, settings.drain_timeout_s)
                try:
                    await runs.release_leases()
                except Exception:
                    logger.exception("leases not released; they expire after the TTL")
                stop.set()
                # A consumer still joining its group cannot see the stop; cut it short.
                await _stopped(bridging, settings.drain_timeout_s)
                await llm.aclose()
                if versioning is not None:
                    await versioning.aclose()
                logger.info("runner stopped")

    async def health() -> HealthReport:
        if not ready.is_set():
            return HealthReport(status="unhealthy", details={"store": "not open yet"})
        details: dict[str, object] = {
            "workflows": catalog.ids,
            "active_runs": runs.active,
            "llm": llm.describe,
            "checkpoints": "postgres" if settings.checkpoint_dsn else "sqlite",
            "instance": settings.instance,
            "outcomes": channel.name if channel else None,
        }
        status: HealthStatus = "healthy"
        if bridge is not None:
            details["kafka"] = {
                "broker": settings.bootstrap_servers,
                "connected": bridge.connected,
                "topic": settings.events_topic,
                "partitions": sorted(tp.partition for tp in bridge.assigned),
            }
            status = "healthy" if bridge.connected else "degraded"
        return HealthReport(status=status, details=details)

    return create_service(
        name="langgraph_runner",
        settings=settings,
        description="Runs PAS workflows (LangGraph graphs) over REST and Kafka, checkpointed, "
        "resumable after interrupts, failures and restarts.",
        route_handlers=[WorkflowController, RunController],
        dependencies={"catalog": catalog, "runs": runs},
        lifespan=[run_runner],
        health_check=health,
        collectors=metrics.collectors,
        write_token=settings.token,
    )


async def _stopped(task: asyncio.Task[None] | None, timeout_s: float) -> None:
    """Until ``task`` ends; cancelled after ``timeout_s``."""
    if task is None:
        return
    _done, late = await asyncio.wait([task], timeout=timeout_s)
    for pending in late:
        pending.cancel()
    await asyncio.gather(*late, return_exceptions=True)


app = build_or_exit(create_app, RunnerSettings)
