"""``GET /health``: what a load balancer, start script or operator asks first."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

import msgspec
from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from libs.common.kit.request_context import QUIET_WHEN_OK
from libs.common.redaction import redact_mapping

HealthStatus = Literal["healthy", "degraded", "unhealthy"]


class HealthReport(msgspec.Struct, kw_only=True):
    """A service's own view of its health; ``details`` is specific to the service."""

    status: HealthStatus = "healthy"
    details: dict[str, Any] = msgspec.field(default_factory=dict)


class HealthResponse(msgspec.Struct, kw_only=True):
    """The spec's health body: status, service, port and uptime, plus the service's details."""

    status: HealthStatus
    service: str
    version: str
    port: int
    uptime_seconds: float
    details: dict[str, Any]


HealthCheck = Callable[[], Awaitable[HealthReport]]


async def _always_ok() -> HealthReport:
    return HealthReport()


def health_handler(
    service: str, version: str, port: int, check: HealthCheck | None = None
) -> HTTPRouteHandler:
    """A ``/health`` route: 200 while ``healthy`` or ``degraded``, 503 when ``unhealthy``.

    The details pass through the one redactor: a URL with credentials, an error quoting one,
    a field named like a secret are shown masked (the page is open to anyone who can reach it).
    """
    started = time.monotonic()
    run_check = check or _always_ok

    @get(
        "/health",
        tags=["operations"],
        summary="Service health",
        opt={QUIET_WHEN_OK: True},
        responses={
            503: ResponseSpec(
                HealthResponse,
                description="Unhealthy: the same body, status `unhealthy`, details say why",
                generate_examples=False,
            )
        },
    )
    async def health() -> Response[HealthResponse]:
        report = await run_check()
        body = HealthResponse(
            status=report.status,
            service=service,
            version=version,
            port=port,
            uptime_seconds=round(time.monotonic() - started, 3),
            details=redact_mapping(report.details),
        )
        return Response(body, status_code=503 if report.status == "unhealthy" else 200)

    return health
