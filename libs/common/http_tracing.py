"""HTTP spans at the cost of one span: a lean server middleware for Litestar's OpenTelemetry
plugin, and a client span for PAS's outbound aiohttp calls.

Why not the contrib instrumentations as they are: measured on the router hop (see
docs/benchmarks.md, tracing section), the ASGI middleware Litestar's plugin wraps by default
spent ~200 us of CPU a request (header decoding once per attribute getter call, a dozen
attributes each cleaned under a lock, duration/size/active-request metric bookkeeping, URL
re-parsing) and the aiohttp instrumentation ~250 us a call (aiohttp's signal machinery for
every hook, URL redaction, metrics), against ~30 us for a span itself; together they were most
of tracing's +22 % at p50. The spans here carry the stable HTTP semantic-convention attributes
that say what a call was (method, route or URL, status, error type), continue and send the W3C
context (through the globally configured propagator), and nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litestar.enums import ScopeType
from litestar.middleware.base import AbstractMiddleware
from litestar.plugins.opentelemetry import (
    OpenTelemetryConfig,
    OpenTelemetryInstrumentationMiddleware,
    OpenTelemetryPlugin,
)
from opentelemetry import propagate, trace
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind, StatusCode

from libs.common.telemetry import tracing_enabled

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUEST_METHOD = "http.request.method"
HTTP_RESPONSE_STATUS_CODE = "http.response.status_code"
URL_SCHEME = "url.scheme"
URL_PATH = "url.path"
URL_FULL = "url.full"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

_SERVER_ERROR = 500
_CLIENT_ERROR = 400

_client_tracer = trace.get_tracer("pas.http")


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
        # The attributes the conventions require of a server span, no more: each one costs
        # a validation under the span's lock.
        attributes: dict[str, Any] = {
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
        with self._tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=attributes
        ) as span:
            if self._config.server_request_hook_handler is not None:
                self._config.server_request_hook_handler(span, dict(scope))

            async def send_noting_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    _record_status(span, message["status"], error_from=_SERVER_ERROR)
                await send(message)

            await self.app(scope, receive, send_noting_status)


def _record_status(span: Span, status: int, *, error_from: int) -> None:
    span.set_attribute(HTTP_RESPONSE_STATUS_CODE, status)
    if status >= error_from:
        span.set_attribute(ERROR_TYPE, str(status))
        span.set_status(StatusCode.ERROR)


@functools.lru_cache(maxsize=256)
def _client_attributes(method: str, url: str) -> Mapping[str, str | int]:
    # The few upstream URLs repeat: parsed once each. No user info and no query in url.full
    # (either may carry a credential).
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    return {
        HTTP_REQUEST_METHOD: method,
        URL_FULL: f"{parts.scheme}://{host}:{port}{parts.path}",
        SERVER_ADDRESS: host,
        SERVER_PORT: port,
    }


@contextmanager
def http_client_span(
    method: str, url: str, headers: Mapping[str, str]
) -> Iterator[tuple[Span, Mapping[str, str]]]:
    """A CLIENT span from sending a request to its response's status line, current inside the
    block, and the headers to send: ``headers`` plus the W3C context naming this span. Note
    the answer with :func:`record_response_status`. With tracing off: the non-recording span
    and ``headers`` as they are, at no cost."""
    if not tracing_enabled():
        yield INVALID_SPAN, headers
        return
    with _client_tracer.start_as_current_span(
        method, kind=SpanKind.CLIENT, attributes=_client_attributes(method, url)
    ) as span:
        sent = dict(headers)
        propagate.inject(sent)
        yield span, sent


def record_response_status(span: Span, status: int) -> None:
    """The response's status on a client span; 4xx and 5xx mark it failed."""
    if span.is_recording():
        _record_status(span, status, error_from=_CLIENT_ERROR)


def litestar_plugins() -> list[OpenTelemetryPlugin]:
    """Litestar's own OpenTelemetry plugin with :class:`ServerSpanMiddleware` (a server span per
    request, the caller's ``traceparent`` as its parent), or nothing when tracing is off."""
    if not tracing_enabled():
        return []
    # Probes and scrapes would be most of the spans and say nothing.
    config = OpenTelemetryConfig(
        exclude=["^/health$", "^/metrics$"], middleware_class=ServerSpanMiddleware
    )
    plugin = OpenTelemetryPlugin(config)
    # The plugin's ``middleware`` property builds Litestar's default class whatever the config
    # names (litestar 2.25); the app reads ``_middleware`` first, as Litestar itself sets it.
    plugin._middleware = config.middleware
    return [plugin]
