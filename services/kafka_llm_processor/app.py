"""The processor as a service: its consume loop in the lifespan, /health and /metrics on 6160.

``python -m services.kafka_llm_processor`` runs it (or ``uvicorn
services.kafka_llm_processor.app:app --port 6160``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from libs.common.kafka.records import run_until_stopped
from libs.common.kit import HealthReport, HealthStatus, create_service
from libs.common.settings import build_or_exit
from services.kafka_llm_processor.llm_client import LLMClient
from services.kafka_llm_processor.metrics import ProcessorMetrics
from services.kafka_llm_processor.processor import DocumentProcessor
from services.kafka_llm_processor.settings import ProcessorSettings

logger = structlog.get_logger("pas.processor")


def create_app(settings: ProcessorSettings) -> Litestar:
    metrics = ProcessorMetrics()
    llm = LLMClient(
        settings.llm_url,
        model=settings.model_name,
        timeout_s=settings.llm_timeout_s,
        api_key=settings.llm_api_key,
    )
    processor = DocumentProcessor(settings, llm, metrics)

    @asynccontextmanager
    async def run_processor(_: Litestar) -> AsyncIterator[None]:
        stop = asyncio.Event()
        loop_task = asyncio.create_task(run_until_stopped(processor, stop, name="processor loop"))
        try:
            yield
        finally:
            stop.set()
            await loop_task
            await llm.aclose()

    async def health() -> HealthReport:
        status: HealthStatus = "healthy" if processor.connected else "degraded"
        try:
            # Records no topic took, waiting in the spill file for `pas spill replay`.
            spilled: int | str = await asyncio.to_thread(processor.spill.waiting)
        except OSError as exc:
            # Where the file cannot be read it cannot be written: a document no topic takes
            # would be recorded nowhere (and its partition commit no further).
            spilled, status = f"spill file unreadable: {exc}", "degraded"
        return HealthReport(
            status=status,
            details={
                "instance": processor.instance,
                "broker": settings.bootstrap_servers,
                "connected": processor.connected,
                "partitions": sorted(tp.partition for tp in processor.assigned),
                "input_topic": settings.input_topic,
                "llm_url": settings.llm_url,
                "spilled": spilled,
            },
        )

    return create_service(
        name="kafka_llm_processor",
        settings=settings,
        description="Reads financial documents from Kafka, asks an LLM, publishes results.",
        route_handlers=[],
        lifespan=[run_processor],
        health_check=health,
        collectors=metrics.collectors,
    )


app = build_or_exit(create_app, ProcessorSettings)
