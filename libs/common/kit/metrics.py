"""``GET /metrics``: Litestar's HTTP metrics plus the collectors a service adds itself."""

from __future__ import annotations

from collections.abc import Sequence

from litestar import Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.plugins.prometheus import PrometheusConfig
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from libs.common.kit.request_context import QUIET_WHEN_OK


def prometheus_config(service: str) -> PrometheusConfig:
    """HTTP request metrics labelled with the service, with route templates as paths."""
    return PrometheusConfig(
        app_name=service,
        prefix="pas",
        group_path=True,
        exclude=["/metrics"],
    )


def metrics_handler(collectors: Sequence[Collector] = ()) -> HTTPRouteHandler:
    """A ``/metrics`` route.

    The service's own collectors live in a registry of this app, not the process-global one,
    so that several apps (tests, or two services in one process) never clash on names.
    """
    own_registry = CollectorRegistry(auto_describe=True)
    for collector in collectors:
        own_registry.register(collector)

    @get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        include_in_schema=False,
        opt={QUIET_WHEN_OK: True},
    )
    async def metrics() -> Response[bytes]:
        payload = generate_latest(REGISTRY) + generate_latest(own_registry)
        return Response(payload, media_type=CONTENT_TYPE_LATEST)

    return metrics
