"""The model a service runs, wrapped with metering: what the HTTP handlers call."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing

import structlog

from libs.common.errors import PASError
from services.llm.backends.base import ChatBackend, Completion, Generation, StreamEvent
from services.llm.profiles import LLMProfile
from services.llm.settings import LLMServiceSettings
from services.llm.usage import UsageMeter

logger = structlog.get_logger("pas.llm")


class LLMRuntime:
    def __init__(
        self, backend: ChatBackend, profile: LLMProfile, settings: LLMServiceSettings
    ) -> None:
        self.backend = backend
        self.profile = profile
        self.settings = settings
        self.meter = UsageMeter(profile.service)
        self.started_at = int(time.time())
        self.endpoints: list[str] = []

    @property
    def model_name(self) -> str:
        return self.backend.model.name

    async def answer(self, endpoint: str, generation: Generation) -> Completion:
        started = time.perf_counter()
        try:
            completion = await self.backend.complete(generation)
        except PASError as exc:
            self.meter.failed(endpoint, exc.status_code)
            raise
        self.meter.answered(endpoint, completion, time.perf_counter() - started)
        return completion

    async def open_stream(
        self, endpoint: str, generation: Generation
    ) -> AsyncGenerator[StreamEvent, None]:
        """Start streaming; errors before the first event raise here, so they get a 4xx/5xx
        status instead of a broken stream."""
        started = time.perf_counter()
        events = self.backend.stream(generation)
        try:
            first = await anext(events)
        except PASError as exc:
            await events.aclose()
            self.meter.failed(endpoint, exc.status_code)
            raise

        async def rest() -> AsyncGenerator[StreamEvent, None]:
            async with aclosing(events):
                event: StreamEvent = first
                while True:
                    if isinstance(event, Completion):
                        self.meter.answered(endpoint, event, time.perf_counter() - started)
                    yield event
                    try:
                        event = await anext(events)
                    except StopAsyncIteration:
                        return
                    except PASError as exc:
                        self.meter.failed(endpoint, exc.status_code)
                        logger.exception("stream failed after it began", endpoint=endpoint)
                        raise

        return rest()
