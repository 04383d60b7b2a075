"""The OpenTelemetry SDK's side of ``libs.common.telemetry``: the tracer provider and the httpx
instrumentation, in a module of their own because only a process that traces imports them:
importing them took 0.15 to 0.4 s of the 1.3 to 2.7 s of CPU a service starts on, on two cores
(most of it the httpx instrumentation; docs/benchmarks.md, service footprint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
)

from libs.common.errors import SettingsError

if TYPE_CHECKING:
    from libs.common.telemetry import TelemetrySettings

_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)


def instrument_httpx() -> None:
    """Outbound httpx requests get client spans and carry the W3C context from now on."""
    HTTPXClientInstrumentor().instrument()


def build_provider(service_name: str, settings: TelemetrySettings) -> TracerProvider:
    """The tracer provider ``settings`` ask for: its sampler, the OTLP/HTTP exporter behind a
    batch processor and/or the console's."""
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; the service name given here wins over
    # the default but not over OTEL_SERVICE_NAME.
    resource = Resource.create({SERVICE_NAME: settings.otel_service_name or service_name})
    provider = TracerProvider(resource=resource, sampler=_sampler(settings))
    endpoint = settings.traces_endpoint()
    if endpoint:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    if settings.pas_traces_console:
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    return provider


def _sampler(settings: TelemetrySettings) -> sampling.Sampler:
    name = settings.otel_traces_sampler.strip().lower()
    if name not in _SAMPLERS:
        raise SettingsError(
            "OTEL_TRACES_SAMPLER", f"{name!r} is none of {', '.join(sorted(_SAMPLERS))}"
        )
    try:
        ratio = float(settings.otel_traces_sampler_arg or 1.0)
    except ValueError as exc:
        raise SettingsError("OTEL_TRACES_SAMPLER_ARG", "not a number") from exc
    root: sampling.Sampler = {
        "always_on": sampling.ALWAYS_ON,
        "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
    }[name.removeprefix("parentbased_")]
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root
