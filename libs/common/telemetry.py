"""Tracing for every PAS process: the OpenTelemetry SDK, set up from the standard variables.

Off unless an exporter is asked for: with no ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and no ``PAS_TRACES_CONSOLE``, no tracer provider is
installed, no instrumentation is patched in and every span PAS code starts is the API's
non-recording one (a few attribute look-ups, no allocation per attribute). When on, spans go
through a batch processor to the OTLP/HTTP exporter (and/or to stdout, for development), inbound
HTTP through Litestar's own OpenTelemetry plugin (with PAS's lean server-span middleware,
``libs.common.http_tracing``), PAS's outbound model calls (aiohttp) as their GenAI client span
with the W3C context in the request, outbound httpx through the contrib instrumentation;
W3C ``traceparent``/``tracestate`` is what crosses the wire.

The SDK, its exporters and the httpx instrumentation are in ``libs.common.trace_provider``,
imported only once tracing is switched on (why: there).

The SDK reads the rest of its variables itself from the process environment
(``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_SCHEDULE_DELAY``...).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from structlog.typing import EventDict, WrappedLogger

from libs.common.settings import BaseSettings, load_settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

logger = structlog.get_logger("pas.telemetry")
_tracer = trace.get_tracer("pas")


class TelemetrySettings(BaseSettings, frozen=True, kw_only=True):
    """The OpenTelemetry variables PAS reads (from ``.env`` too), under their standard names."""

    otel_sdk_disabled: bool = False
    """Tracing off whatever else is set."""
    otel_exporter_otlp_endpoint: str = ""
    """An OTLP/HTTP collector's base URL (``/v1/traces`` is appended); empty: no export."""
    otel_exporter_otlp_traces_endpoint: str = ""
    """The full URL spans are posted to; wins over ``otel_exporter_otlp_endpoint``."""
    otel_service_name: str = ""
    """``service.name`` of the spans; empty: the service's own name (``llama31_8b``,
    ``provider_router``...)."""
    otel_traces_sampler: str = "parentbased_always_on"
    otel_traces_sampler_arg: str = ""
    """The ratio for the ``*traceidratio`` samplers (default 1.0)."""
    pas_traces_console: bool = False
    """Print every span to stdout as well (development)."""

    def traces_endpoint(self) -> str:
        if self.otel_exporter_otlp_traces_endpoint:
            return self.otel_exporter_otlp_traces_endpoint
        if self.otel_exporter_otlp_endpoint:
            return self.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return ""

    def enabled(self) -> bool:
        exporting = bool(self.traces_endpoint()) or self.pas_traces_console
        return exporting and not self.otel_sdk_disabled


class _Installed:
    """The provider this process installed, if any (one per process: the API's global)."""

    lock = threading.Lock()
    provider: TracerProvider | None = None


def tracing_enabled() -> bool:
    """Whether this process installed a tracer provider."""
    return _Installed.provider is not None


def configure_tracing(service_name: str, settings: TelemetrySettings | None = None) -> bool:
    """Install the tracer provider and the client instrumentations once per process.

    Returns whether tracing is on. Later calls (every app factory calls it) change nothing: a
    process hosts one service, and the global provider cannot be replaced.
    """
    settings = settings or load_settings(TelemetrySettings)
    if not settings.enabled():
        return tracing_enabled()
    with _Installed.lock:
        if _Installed.provider is not None:
            return True
        from libs.common.trace_provider import build_provider, instrument_httpx  # noqa: PLC0415

        provider = build_provider(service_name, settings)
        trace.set_tracer_provider(provider)
        _Installed.provider = provider
        # Patched in only now: with tracing off, httpx stays as it is. PAS's aiohttp calls
        # (the hot path: router to model) are traced by their GenAI span instead of the
        # contrib instrumentation (libs.common.http_tracing, where the reason is measured).
        instrument_httpx()
    logger.info(
        "tracing on",
        service_name=settings.otel_service_name or service_name,
        endpoint=settings.traces_endpoint() or None,
        console=settings.pas_traces_console,
        sampler=settings.otel_traces_sampler,
    )
    return True


FLUSH_TIMEOUT_MS = 5000


def flush_tracing() -> None:
    """Send every finished span now (at shutdown, before the process goes); takes no argument
    so that it serves as a Litestar shutdown hook as it is."""
    if _Installed.provider is not None:
        _Installed.provider.force_flush(FLUSH_TIMEOUT_MS)


def add_trace_ids(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: ``trace_id`` and ``span_id`` of the span active where a line is
    logged (hex, as trace back ends show them), so that a line leads to its trace."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict.setdefault("trace_id", format(context.trace_id, "032x"))
        event_dict.setdefault("span_id", format(context.span_id, "016x"))
    return event_dict


@contextmanager
def pas_span(
    name: str,
    *,
    attributes: Mapping[str, str | int | float | bool] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    context: otel_context.Context | None = None,
) -> Iterator[Span]:
    """A span for one of PAS's own steps (a registry lookup, a git write, a workflow run),
    current inside the block; an exception leaving it is recorded on it and goes on.
    ``context``: its parent, when not the current span (one extracted from headers)."""
    with _tracer.start_as_current_span(
        name, context=context, kind=kind, attributes=attributes
    ) as span:
        yield span
