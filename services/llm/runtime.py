"""The model a service runs, wrapped with metering: what the HTTP handlers call."""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncGenerator
from contextlib import aclosing

import structlog
from opentelemetry.trace import SpanKind

from libs.common.errors import PASError
from libs.common.genai_tracing import (
    CHAT,
    EMBEDDINGS,
    GEN_AI_RESPONSE_FINISH_REASONS,
    TEXT_COMPLETION,
    ModelCallSpan,
    model_call,
    record_cancelled,
    record_error,
    record_usage,
    requested_generation,
    start_genai_span,
)
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.kit.request_context import current_request_id
from libs.common.schemas.usage import UsageStatus, new_usage_event
from services.llm.admission import AdmissionGate, Admitted, Overloaded
from services.llm.backends.base import (
    ChatBackend,
    Completion,
    Embeddings,
    Generation,
    StreamEvent,
)
from services.llm.profiles import LLMProfile
from services.llm.settings import LLMServiceSettings
from services.llm.usage import CallContext, UsageMeter, current_call_context

logger = structlog.get_logger("pas.llm")


class LLMRuntime:
    def __init__(
        self,
        backend: ChatBackend,
        profile: LLMProfile,
        settings: LLMServiceSettings,
        usage: UsagePublisher | None = None,
    ) -> None:
        self.backend = backend
        self.profile = profile
        self.settings = settings
        self.meter = UsageMeter(profile.service)
        self.usage = usage
        self.started_at = int(time.time())
        self.endpoints: list[str] = []
        self.gate = AdmissionGate(settings.parallel, settings.max_waiting)

    @property
    def model_name(self) -> str:
        return self.backend.model.name

    def _report(
        self,
        call: CallContext,
        status: UsageStatus,
        elapsed_s: float,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_tokens: int = 0,
        capability: str | None = None,
        error: PASError | None = None,
    ) -> None:
        """One usage event per call, unless the caller reports it (the router does)."""
        if self.usage is None or call.reported_by:
            return
        if error is not None and error.status_code < 500:
            return  # a refused request (too long, invalid) is not a model call
        self.usage.publish(
            new_usage_event(
                service=self.profile.service,
                provider=self.backend.kind,
                model=self.model_name,
                status=status,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cached_tokens=cached_tokens,
                capability=capability,
                latency_ms=elapsed_s * 1000,
                request_id=current_request_id(),
                workflow_id=call.workflow_id,
                run_id=call.run_id,
                error=str(error) if error else None,
            )
        )

    def _report_answer(self, call: CallContext, elapsed_s: float, completion: Completion) -> None:
        self._report(
            call,
            "ok",
            elapsed_s,
            prompt_tokens=completion.prompt_tokens,
            completion_tokens=completion.completion_tokens,
            cached_tokens=completion.cached_tokens or 0,
        )

    async def embed(self, endpoint: str, texts: list[str], *, truncate: bool) -> Embeddings:
        call = current_call_context()
        started = time.perf_counter()
        span = start_genai_span(
            EMBEDDINGS,
            model=self.model_name,
            provider=self.backend.kind,
            kind=SpanKind.INTERNAL,
            attributes={"pas.endpoint": endpoint},
        )
        with model_call(span):
            try:
                embeddings = await self.backend.embed(texts, truncate=truncate)
            except PASError as exc:
                self.meter.failed(endpoint, exc.status_code)
                elapsed_s = time.perf_counter() - started
                self._report(call, "error", elapsed_s, capability=EMBEDDINGS, error=exc)
                record_error(span, exc)
                raise
            record_usage(span, input_tokens=embeddings.prompt_tokens, output_tokens=0)
        elapsed_s = time.perf_counter() - started
        self.meter.embedded(endpoint, embeddings.prompt_tokens, elapsed_s)
        # Counted as what they are: analytics tells them from answers by this capability.
        self._report(
            call, "ok", elapsed_s, prompt_tokens=embeddings.prompt_tokens, capability=EMBEDDINGS
        )
        return embeddings

    def _start_span(self, endpoint: str, generation: Generation) -> ModelCallSpan:
        """The call's GenAI span, started (not current): ended by the caller."""
        attributes = requested_generation(
            max_tokens=generation.max_tokens,
            temperature=generation.temperature,
            top_p=generation.top_p,
            seed=generation.seed,
            stop=generation.stop,
        )
        attributes["pas.endpoint"] = endpoint
        return start_genai_span(
            # Ollama's /api/generate takes a prompt; every other endpoint takes messages.
            TEXT_COMPLETION if "generate" in endpoint else CHAT,
            model=self.model_name,
            provider=self.backend.kind,
            # The model runs here (or behind this service's own backend): an internal step.
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )

    def _admit(self, endpoint: str) -> Admitted:
        """Take the request, or refuse it with 429 and Retry-After (``AdmissionGate``)."""
        try:
            return self.gate.enter()
        except Overloaded as exc:
            self.meter.failed(endpoint, exc.status_code)
            logger.warning("request refused: the model is busy", endpoint=endpoint)
            raise

    async def answer(self, endpoint: str, generation: Generation) -> Completion:
        call = current_call_context()
        admitted = self._admit(endpoint)
        started = time.perf_counter()
        answered_s: float | None = None
        try:
            # Current while the backend runs, so that its own spans (an HTTP call) are children.
            with model_call(self._start_span(endpoint, generation)) as span:
                try:
                    completion = await self.backend.complete(generation)
                except PASError as exc:
                    self.meter.failed(endpoint, exc.status_code)
                    self._report(call, "error", time.perf_counter() - started, error=exc)
                    record_error(span, exc)
                    raise
                _record(span, completion)
            answered_s = time.perf_counter() - started
        finally:
            admitted.leave(answered_s)
        self.meter.answered(endpoint, completion, answered_s)
        self._report_answer(call, answered_s, completion)
        return completion

    async def open_stream(
        self, endpoint: str, generation: Generation
    ) -> AsyncGenerator[StreamEvent, None]:
        """Start streaming; errors before the first event raise here, so they get a 4xx/5xx
        status instead of a broken stream."""
        call = current_call_context()
        admitted = self._admit(endpoint)
        started = time.perf_counter()
        # Ended when the stream is: the handler returns before the first token goes out.
        span = self._start_span(endpoint, generation)
        events = self.backend.stream(generation)
        try:
            first = await anext(events)
        except BaseException as exc:
            admitted.leave()
            await events.aclose()
            if isinstance(exc, PASError):
                self.meter.failed(endpoint, exc.status_code)
                self._report(call, "error", time.perf_counter() - started, error=exc)
                record_error(span, exc)
            span.end()
            raise
        answered_s: float | None = None

        async def rest() -> AsyncGenerator[StreamEvent, None]:
            nonlocal answered_s
            try:
                async with aclosing(events):
                    event: StreamEvent = first
                    while True:
                        if isinstance(event, Completion):
                            answered_s = time.perf_counter() - started
                            self.meter.answered(endpoint, event, answered_s)
                            self._report_answer(call, answered_s, event)
                            _record(span, event)
                        yield event
                        try:
                            event = await anext(events)
                        except StopAsyncIteration:
                            return
                        except PASError as exc:
                            self.meter.failed(endpoint, exc.status_code)
                            self._report(call, "error", time.perf_counter() - started, error=exc)
                            record_error(span, exc)
                            logger.exception("stream failed after it began", endpoint=endpoint)
                            raise
            finally:
                admitted.leave(answered_s)
                span.end()

        stream = rest()
        # A stream closed before it was ever read (another choice failed to open, a response
        # never sent) runs no ``finally``: it leaves the gate and ends its span when it is
        # collected. (asyncio closes the backend's stream, started above, when it is.)
        weakref.finalize(stream, _abandoned, admitted, span)
        return stream


def _abandoned(admitted: Admitted, span: ModelCallSpan) -> None:
    """What the ``finally`` of a stream never read would have done; nothing after one read."""
    admitted.leave()
    if span.is_recording():  # an ended span records no more
        record_cancelled(span, "the stream was closed before it was read")
        span.end()


def _record(span: ModelCallSpan, completion: Completion) -> None:
    record_usage(
        span,
        input_tokens=completion.prompt_tokens,
        output_tokens=completion.completion_tokens,
        cached_input_tokens=completion.cached_tokens,
    )
    span.set_attributes({GEN_AI_RESPONSE_FINISH_REASONS: [completion.finish_reason]})
