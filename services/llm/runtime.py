"""The model a service runs, wrapped with metering: what the HTTP handlers call."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import structlog

from libs.common.errors import PASError
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.kit.request_context import current_request_id
from libs.common.schemas.usage import UsageStatus, new_usage_event
from services.llm.backends.base import ChatBackend, Completion, Generation, StreamEvent
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

    @property
    def model_name(self) -> str:
        return self.backend.model.name

    def _report(
        self,
        call: CallContext,
        status: UsageStatus,
        elapsed_s: float,
        completion: Completion | None = None,
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
                prompt_tokens=completion.prompt_tokens if completion else 0,
                completion_tokens=completion.completion_tokens if completion else 0,
                latency_ms=elapsed_s * 1000,
                request_id=current_request_id(),
                workflow_id=call.workflow_id,
                run_id=call.run_id,
                error=str(error) if error else None,
            )
        )

    async def answer(self, endpoint: str, generation: Generation) -> Completion:
        call = current_call_context()
        started = time.perf_counter()
        try:
            completion = await self.backend.complete(generation)
        except PASError as exc:
            self.meter.failed(endpoint, exc.status_code)
            self._report(call, "error", time.perf_counter() - started, error=exc)
            raise
        elapsed_s = time.perf_counter() - started
        self.meter.answered(endpoint, completion, elapsed_s)
        self._report(call, "ok", elapsed_s, completion)
        return completion

    async def open_stream(
        self, endpoint: str, generation: Generation
    ) -> AsyncGenerator[StreamEvent, None]:
        """Start streaming; errors before the first event raise here, so they get a 4xx/5xx
        status instead of a broken stream."""
        call = current_call_context()
        started = time.perf_counter()
        events = self.backend.stream(generation)
        try:
            first = await anext(events)
        except PASError as exc:
            await events.aclose()
            self.meter.failed(endpoint, exc.status_code)
            self._report(call, "error", time.perf_counter() - started, error=exc)
            raise

        async def rest() -> AsyncGenerator[StreamEvent, None]:
            async with aclosing(events):
                event: StreamEvent = first
                while True:
                    if isinstance(event, Completion):
                        elapsed_s = time.perf_counter() - started
                        self.meter.answered(endpoint, event, elapsed_s)
                        self._report(call, "ok", elapsed_s, event)
                    yield event
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        return
                    except PASError as exc:
                        self.meter.failed(endpoint, exc.status_code)
                        self._report(call, "error", time.perf_counter() - started, error=exc)
                        logger.exception("stream failed after it began", endpoint=endpoint)
                        raise

        return rest()
