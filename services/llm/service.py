"""The one base every LLM wrapper is built from: ``create_llm_app(settings, profile)``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import msgspec
import structlog
from litestar import Litestar, Router
from litestar.types import ControllerRouterHandler

from libs.common.clients.registry import AgentRegistration, RegistryClient
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.kit import HealthReport, create_service
from libs.common.schemas.agents import AgentDefinition
from services.llm.backends import backend_for
from services.llm.info import service_info
from services.llm.ollama_api import OllamaController
from services.llm.openai_api import OpenAIController
from services.llm.profiles import LLMProfile
from services.llm.runtime import LLMRuntime
from services.llm.settings import LLMServiceSettings
from services.llm.usage import remember_call_context

logger = structlog.get_logger("pas.llm")


def agent_definition(
    profile: LLMProfile, settings: LLMServiceSettings, runtime: LLMRuntime
) -> AgentDefinition:
    """The spec's definition, with the endpoint and model this process really serves."""
    model = runtime.backend.model
    return msgspec.structs.replace(
        profile.agent,
        endpoint=settings.advertise_url or f"http://localhost:{settings.port}",
        metadata={
            **profile.agent.metadata,
            "model": model.name,
            "provider": runtime.backend.kind,
            "parameters": model.parameter_size or profile.agent.metadata.get("parameters"),
            "quantization": model.quantization or None,
            "context_length": model.context_length,
        },
    )


def build_runtime(settings: LLMServiceSettings, profile: LLMProfile) -> LLMRuntime:
    usage = (
        UsagePublisher(
            settings.kafka_bootstrap_servers, service=profile.service, topic=settings.usage_topic
        )
        if settings.kafka_bootstrap_servers
        else None
    )
    return LLMRuntime(backend_for(settings, profile), profile, settings, usage)


def create_llm_app(
    runtime: LLMRuntime,
    *,
    extra_handlers: Sequence[ControllerRouterHandler] = (),
    extra_dependencies: Mapping[str, object] | None = None,
) -> Litestar:
    """An LLM service around ``runtime``; a specialised one adds its handlers and objects."""
    settings, profile = runtime.settings, runtime.profile

    @asynccontextmanager
    async def run_model(_: Litestar) -> AsyncIterator[None]:
        await runtime.backend.start()
        if runtime.usage is not None:
            runtime.usage.start()
        registration: AgentRegistration | None = None
        registry: RegistryClient | None = None
        if settings.register:
            registry = RegistryClient(settings.registry_url, token=settings.registry_token)
            registration = AgentRegistration(
                registry,
                agent_definition(profile, settings, runtime),
                ttl_s=settings.registration_ttl_s,
            )
            registration.start()
        logger.info(
            "llm service started",
            service=profile.service,
            backend=runtime.backend.kind,
            model=runtime.model_name,
            settings=settings.redacted(),
        )
        try:
            yield
        finally:
            if registration is not None:
                await registration.stop()
            if registry is not None:
                await registry.aclose()
            if runtime.usage is not None:
                await runtime.usage.stop()
            await runtime.backend.close()
            logger.info("llm service stopped", service=profile.service)

    async def health() -> HealthReport:
        probe = await runtime.backend.probe()
        details: dict[str, object] = {
            "backend": runtime.backend.kind,
            "backend_location": runtime.backend.location,
            "model": runtime.model_name,
            "model_loaded": probe.answers,
            "backend_detail": probe.detail,
        }
        if runtime.backend.kind == "ollama":
            details["ollama_backend"] = runtime.backend.location
        # Up but unable to answer: say so without dropping the service from load balancers.
        return HealthReport(status="healthy" if probe.answers else "degraded", details=details)

    handlers: list[ControllerRouterHandler] = [
        # The model endpoints read the caller's usage headers (workflow, run, reported by).
        Router(
            path="/",
            route_handlers=[OpenAIController, OllamaController],
            before_request=remember_call_context,
        ),
        service_info,
        *extra_handlers,
    ]
    app = create_service(
        name=profile.service,
        settings=settings,
        description=f"{profile.title}: OpenAI- and Ollama-compatible chat over a local model.",
        route_handlers=handlers,
        dependencies={"runtime": runtime, **(extra_dependencies or {})},
        lifespan=[run_model],
        health_check=health,
        collectors=[
            *runtime.meter.collectors,
            *runtime.gate.collectors,
            *runtime.backend.collectors,
            *(runtime.usage.collectors if runtime.usage else []),
        ],
    )
    runtime.endpoints = sorted(
        {route.path for route in app.routes if not route.path.startswith("/schema")}
    )
    return app
