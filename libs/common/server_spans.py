"""The server half of PAS's HTTP tracing: one SERVER span a request, through Litestar's own
OpenTelemetry plugin with a lean middleware in place of the contrib ASGI one (why:
``libs.common.http_tracing``). Imported only by a process that traces: the plugin brings the
contrib instrumentation's modules with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from litestar.enums import ScopeType
from litestar.middleware.base import AbstractMiddleware
from litestar.plugins.opentelemetry import (
    OpenTelemetryConfig,
    OpenTelemetryInstrumentationMiddleware,
    OpenTelemetryPlugin,
)
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.util.types import AttributeValue

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_SCHEME = "url.scheme"
URL_PATH = "url.path"
ERROR_TYPE = "error.type"
_SERVER_ERROR = 500


class ServerSpanMiddleware(OpenTelemetryInstrumentationMiddleware):
    """One SERVER span per HTTP request, the caller's W3C context as its parent, current while
    the app runs (so the access log line and every span below hang from it).

    Named and given ``http.route`` by the plugin's ``scope_span_details_extractor`` (Litestar's
    ``{method} {path}`` by default); honours the config's ``exclude``, ``exclude_opt_key``,
    ``scopes``, ``tracer``/``tracer_provider`` and ``server_request_hook_handler``. No
    per-message internal spans and no metrics (the services' Prometheus middleware counts
    requests already).
    """

    def __init__(self, app: ASGIApp, config: OpenTelemetryConfig) -> None:
        # Not the parent's __init__: it builds the contrib ASGI middleware this replaces.
        AbstractMiddleware.__init__(
            self,
            app=app,
            scopes=config.scopes,
            exclude=config.exclude,
            exclude_opt_key=config.exclude_opt_key,
        )
        self._config = config
        self._tracer = config.tracer or trace.get_tracer(
            "pas.http.server", tracer_provider=config.tracer_provider
        )
        # The headers the propagator reads (traceparent, tracestate, baggage by default).
        self._carried = frozenset(
            name.lower().encode("latin-1") for name in propagate.get_global_textmap().fields
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        # The attributes the conventions require of a server span, no more, set when the
        # request is over: the SDK checks each under the span's lock, and by then the answer
        # has gone out.
        attributes: dict[str, AttributeValue] = {
            HTTP_REQUEST_METHOD: scope["method"],
            URL_SCHEME: scope["scheme"],
            URL_PATH: scope["path"],
        }
        carrier = {
            key.decode("latin-1"): value.decode("latin-1")
            for key, value in scope["headers"]
            if key in self._carried
        }
        name, details = self._config.scope_span_details_extractor(scope)
        attributes.update(details)
        parent = propagate.extract(carrier) if carrier else None
        with self._tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER) as span:
            if self._config.server_request_hook_handler is not None:
                self._config.server_request_hook_handler(span, dict(scope))

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    attributes[HTTP_RESPONSE_STATUS_CODE] = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, send_noting_status)
            finally:
                _record_request(span, attributes)


def _record_request(span: Span, attributes: dict[str, AttributeValue]) -> None:
    status = attributes.get(HTTP_RESPONSE_STATUS_CODE)
    if isinstance(status, int) and status >= _SERVER_ERROR:
        attributes[ERROR_TYPE] = str(status)
        span.set_status(StatusCode.ERROR)
    span.set_attributes(attributes)


def server_span_plugin() -> OpenTelemetryPlugin:
    """Litestar's own OpenTelemetry plugin with :class:`ServerSpanMiddleware` (a server span per
    request, the caller's ``traceparent`` as its parent)."""
    # Probes and scrapes would be most of the spans and say nothing.
    config = OpenTelemetryConfig(
        exclude=["^/health$", "^/metrics$"], middleware_class=ServerSpanMiddleware
    )
    plugin = OpenTelemetryPlugin(config)
    # The plugin's ``middleware`` property builds Litestar's default class whatever the config
    # names (litestar 2.25); the app reads ``_middleware`` first, as Litestar itself sets it.
    plugin._middleware = config.middleware
    return plugin
