"""HTTP tracing at the cost of one span: a lean server middleware for Litestar's OpenTelemetry
plugin (``libs.common.server_spans``, imported only when tracing is on), and the W3C context on
PAS's outbound model calls (whose GenAI span is their client span).

Why not the contrib instrumentations as they are: measured on the router hop (see
docs/benchmarks.md, tracing section), the ASGI middleware Litestar's plugin wraps by default
spent ~200 us of CPU a request (header decoding once per attribute getter call, a dozen
attributes each cleaned under a lock, duration/size/active-request metric bookkeeping, URL
re-parsing) and the aiohttp instrumentation ~250 us a call (aiohttp's signal machinery for
every hook, URL redaction, metrics), against ~30 us for a span itself; together they were most
of tracing's +22 % at p50. The server span here carries the stable HTTP semantic-convention
attributes that say what a request was (method, route, status, error type) and continues the
caller's W3C context (through the globally configured propagator); nothing else.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.util.types import AttributeValue

from libs.common.genai_tracing import current_model_call
from libs.common.telemetry import tracing_enabled

if TYPE_CHECKING:
    from litestar.plugins.opentelemetry import OpenTelemetryPlugin

SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"


@functools.lru_cache(maxsize=256)
def _server_attributes(url: str) -> Mapping[str, AttributeValue]:
    # The few upstream URLs repeat: parsed once each.
    parts = urlsplit(url)
    return {
        SERVER_ADDRESS: parts.hostname or "",
        SERVER_PORT: parts.port or (443 if parts.scheme == "https" else 80),
    }


def outbound_headers(url: str, headers: Mapping[str, str]) -> Mapping[str, str]:
    """The headers of a model call made inside its GenAI span: ``headers`` plus the W3C
    context naming that span, which also gets the server's address and port (attributes the
    GenAI conventions put on it). The call has no HTTP client span of its own: the GenAI span
    is the client span of this one request (as OpenTelemetry's own GenAI instrumentations do),
    and a second span around the same request cost as much again (docs/benchmarks.md, tracing
    section). With tracing off: ``headers`` as they are, at no cost."""
    if not tracing_enabled():
        return headers
    call = current_model_call()
    if call is not None:
        call.set_attributes(_server_attributes(url))
    else:
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes(_server_attributes(url))
    sent = dict(headers)
    propagate.inject(sent)
    return sent


def litestar_plugins() -> list[OpenTelemetryPlugin]:
    """Litestar's own OpenTelemetry plugin with PAS's server-span middleware, or nothing when
    tracing is off (and then the plugin's modules are not imported)."""
    if not tracing_enabled():
        return []
    from libs.common.server_spans import server_span_plugin  # noqa: PLC0415

    return [server_span_plugin()]
