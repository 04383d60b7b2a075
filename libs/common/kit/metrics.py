"""``GET /metrics``: Litestar's HTTP metrics plus the collectors a service adds itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from litestar import Request, Response, get
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

from libs.common.kit.request_context import QUIET_WHEN_OK


class RouteTemplateMiddleware(PrometheusMiddleware):
    """Litestar's Prometheus middleware, less a URL a request: with ``group_path`` the library
    still parses the request's URL for a path it then throws away for the route template (a
    twentieth of the registry's CPU a heartbeat)."""

    def _get_default_labels(self, request: Request[Any, Any, Any]) -> dict[str, str | int | float]:
        scope = request.scope
        return {
            "method": scope["method"] if scope["type"] == ScopeType.HTTP else scope["type"],
            "path": scope["path_template"],
            "status_code": 200,
            "app_name": self._config.app_name,
        }


def prometheus_config(service: str) -> PrometheusConfig:
    """HTTP request metrics labelled with the service, with route templates as paths."""
    return PrometheusConfig(
        app_name=service,
        prefix="pas",
        group_path=True,
        exclude=["/metrics"],
        middleware_class=RouteTemplateMiddleware,
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
