"""``create_service``: the one way a PAS Litestar app is put together."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Self

import msgspec
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import Provide
from litestar.types import ControllerRouterHandler, ExceptionHandlersMap
from prometheus_client.registry import Collector

from libs.common.http_tracing import litestar_plugins
from libs.common.kit.api_docs import api_page_assets, openapi_config
from libs.common.kit.auth import WriteTokenMiddleware
from libs.common.kit.exposure import listen_host, listen_port, refuse_open_exposure
from libs.common.kit.health import HealthCheck, health_handler
from libs.common.kit.heap import StartupHeap
from libs.common.kit.logging import LogFormat, configure_logging
from libs.common.kit.metrics import metrics_handler, prometheus_config
from libs.common.kit.openapi import WireTypeSchemaPlugin
from libs.common.kit.problems import EXCEPTION_HANDLERS
from libs.common.kit.request_context import RequestContextMiddleware
from libs.common.settings import BaseSettings, env_names
from libs.common.telemetry import configure_tracing, flush_tracing

PAS_VERSION = "0.1.0"

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[None]]


class ServiceSettings(BaseSettings, frozen=True, kw_only=True):
    """Settings every service has; a service's own Struct inherits these."""

    env_aliases: ClassVar = {
        "host": ("PAS_HOST",),
        "log_level": ("LOG_LEVEL",),
        "log_format": ("LOG_FORMAT",),
        "token": ("PAS_TOKEN",),
        "allow_unauthenticated": ("PAS_ALLOW_UNAUTHENTICATED",),
    }

    host: str = "127.0.0.1"
    """Where the service listens (the start scripts bind ``<PREFIX>HOST``, else ``PAS_HOST``)."""
    port: int = 0
    log_level: str = "INFO"
    log_format: LogFormat = "json"
    max_body_bytes: int = 1_048_576
    token: str | None = None
    """When set, every write (POST, PUT, PATCH, DELETE) needs ``Authorization: Bearer <token>``,
    except the few handlers declared with ``open_write``. ``PAS_TOKEN`` is one for all."""
    allow_unauthenticated: bool = False
    """Start even when listening beyond loopback with no token (behind an authenticating
    proxy, say); without it such a service refuses to start."""

    def as_run(self) -> Self:
        """Run as ``uvicorn <app> --port N``, the service listens on N whatever ``port`` says:
        its health and its registration say N too (``libs/common/kit/exposure.py``)."""
        return msgspec.structs.replace(self, port=listen_port(self.port))


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

    ``dependencies`` are plain objects, each provided to handlers under its key (a handler on a
    hot path takes one: Litestar resolves two or more in an anyio task group a request, litestar
    issue 4563, which took a seventh of the router's CPU a call); ``lifespan``
    context managers open and close what the service owns (stores, tasks, clients), so that
    SIGTERM drains in-flight requests and then closes them in reverse order.

    Every write handler needs the token (``write_token``, default ``settings.token``) unless it
    was declared with ``open_write(reason)``; a service that would listen beyond loopback with
    no token refuses to start (:class:`SettingsError` naming the token's variable).
    """
    token = write_token or settings.token
    refuse_open_exposure(
        service=name,
        host=listen_host(settings.host),
        token=token,
        allowed=settings.allow_unauthenticated,
        token_variables=env_names(type(settings), "token"),
    )
    configure_logging(settings.log_level, settings.log_format)
    # Off (nothing installed) unless an OTLP endpoint or the console exporter is configured.
    configure_tracing(name)
    prometheus = prometheus_config(name)
    heap = StartupHeap()
    config = AppConfig(
        route_handlers=[
            health_handler(name, PAS_VERSION, settings.port, health_check),
            metrics_handler(collectors),
            api_page_assets(),
            *route_handlers,
        ],
        dependencies={
            key: Provide(_constant(value), sync_to_thread=False)
            for key, value in (dependencies or {}).items()
        },
        # Innermost the token: a refused write is logged with its request id and counted.
        middleware=[
            RequestContextMiddleware(),
            prometheus.middleware,
            *([WriteTokenMiddleware(token)] if token else []),
        ],
        exception_handlers={**EXCEPTION_HANDLERS, **(exception_handlers or {})},
        lifespan=list(lifespan),
        # Once the lifespans have opened what the service owns, that is its long-lived heap.
        on_startup=[heap.settle],
        # After the lifespans closed what they own: their last spans go out too.
        on_shutdown=[flush_tracing, heap.release],
        plugins=[WireTypeSchemaPlugin(), *litestar_plugins()],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=openapi_config(
            title=f"PAS {name}", version=PAS_VERSION, description=description or None
        ),
    )
    return Litestar.from_config(config)


def _constant(value: Any) -> Callable[[], Any]:
    def provide() -> Any:
        return value

    return provide
