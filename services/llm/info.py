"""``GET /info``: the spec's service description, with performance as measured here."""

from __future__ import annotations

import msgspec
from litestar import get
from litestar.di import NamedDependency

from libs.common.kit.service import PAS_VERSION
from services.llm.runtime import LLMRuntime
from services.llm.usage import Performance


class ModelInfo(msgspec.Struct, kw_only=True):
    name: str
    parameters: str
    quantization: str
    context_length: int | None
    family: str


class BackendInfo(msgspec.Struct, kw_only=True):
    kind: str
    location: str


class ServiceInfo(msgspec.Struct, kw_only=True):
    service_name: str
    version: str
    agent_id: str
    model: ModelInfo
    backend: BackendInfo
    capabilities: list[str]
    performance: Performance
    endpoints: list[str]


@get("/info", tags=["operations"], summary="What this service serves and how fast it has been")
async def service_info(runtime: NamedDependency[LLMRuntime]) -> ServiceInfo:
    model = runtime.backend.model
    return ServiceInfo(
        service_name=runtime.profile.title,
        version=PAS_VERSION,
        agent_id=runtime.profile.agent.agent_id,
        model=ModelInfo(
            name=model.name,
            parameters=model.parameter_size,
            quantization=model.quantization,
            context_length=model.context_length,
            family=model.family,
        ),
        backend=BackendInfo(kind=runtime.backend.kind, location=runtime.backend.location),
        capabilities=list(runtime.profile.agent.capabilities),
        performance=runtime.meter.performance(),
        endpoints=runtime.endpoints,
    )
