"""Streams that give back what they hold when the client goes away."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar.background_tasks import BackgroundTask


def closes_when_sent(iterator: AsyncGenerator[Any, None]) -> BackgroundTask:
    """Pass as a streaming response's ``background`` task.

    Litestar stops iterating when the client disconnects but leaves the generator suspended;
    whatever it holds (a model's turn, an upstream connection) would wait for the garbage
    collector. Closing it once the response is over runs its ``finally`` blocks at once.
    """
    return BackgroundTask(iterator.aclose)
