"""What the Kafka tests share: the retries stamina schedules."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import stamina
from stamina.instrumentation import RetryDetails


class Retries:
    """Every retry stamina schedules (through its instrumentation hooks)."""

    def __init__(self) -> None:
        self.seen: list[RetryDetails] = []
        self.scheduled = asyncio.Event()

    def __call__(self, details: RetryDetails) -> None:
        self.seen.append(details)
        self.scheduled.set()


@pytest.fixture
def retries() -> Iterator[Retries]:
    found = Retries()
    before = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([*before, found])
    yield found
    stamina.instrumentation.set_on_retry_hooks(before)
