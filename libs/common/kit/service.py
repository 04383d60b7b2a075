"""``create_service``: the one way a PAS Litestar app is put together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap
from prometheus_client.registry import Collector

from libs.common.kit.auth import WRITE_TOKEN_STATE_KEY
from libs.common.kit.health import HealthCheck, health_handler
from libs.common.kit.logging import LogFormat, configure_logging
from libs.common.kit.metrics import metrics_handler, prometheus_config
from libs.common.kit.openapi import WireTypeSchemaPlugin
from libs.common.kit.problems import EXCEPTION_HANDLERS
from libs.common.kit.request_context import RequestContextMiddleware
from libs.common.settings import BaseSettings

PAS_VERSION = "0.1.0"

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


class ServiceSettings(BaseSettings, frozen=True, kw_only=True):
    """Settings every service has; a service's own Struct inherits these."""

    env_aliases: ClassVar = {"log_level": ("LOG_LEVEL",), "log_format": ("LOG_FORMAT",)}

    host: str = "127.0.0.1"
    port: int = 0
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    max_body_bytes: int = 1_048_576


def create_service(
    *,
    name: str,
    settings: ServiceSettings,
    route_handlers: Sequence[ControllerRouterHandler],
    description: str = "",
    dependencies: dict[str, Any] | None = None,
    lifespan: Sequence[Lifespan] = (),
    health_check: HealthCheck | None = None,
    collectors: Sequence[Collector] = (),
    write_token: str | None = None,
    exception_handlers: ExceptionHandlersMap | None = None,
) -> Litestar:
    """A Litestar app with ``/health``, ``/metrics``, JSON logs, request ids and problem bodies.

    ``dependencies`` are plain objects, each provided to handlers under its key; ``lifespan``
    context managers open and close what the service owns (stores, tasks, clients), so that
    SIGTERM drains in-flight requests and then closes them in reverse order.
    """
    configure_logging(settings.log_level, settings.log_format)
    prometheus = prometheus_config(name)
    config = AppConfig(
        route_handlers=[
            health_handler(name, PAS_VERSION, settings.port, health_check),
            metrics_handler(collectors),
            *route_handlers,
        ],
        dependencies={
            key: Provide(_constant(value), sync_to_thread=False)
            for key, value in (dependencies or {}).items()
        },
        middleware=[RequestContextMiddleware(), prometheus.middleware],
        exception_handlers={**EXCEPTION_HANDLERS, **(exception_handlers or {})},
        lifespan=list(lifespan),
        plugins=[WireTypeSchemaPlugin()],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title=f"PAS {name}",
            version=PAS_VERSION,
            description=description or None,
            path="/schema",
        ),
    )
    app = Litestar.from_config(config)
    app.state[WRITE_TOKEN_STATE_KEY] = write_token
    return app


def _constant(value: Any) -> Callable[[], Any]:
    def provide() -> Any:
        return value

    return provide
