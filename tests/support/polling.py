"""Waiting in tests for what another process or task does: ask until the answer is the one
awaited, or the time is up.

Both return the last answer either way, so that the test asserts on it and a failure shows
what was seen last (``assert poll(...)``, or a helper that names what it waited for).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


def _truthy(answer: object) -> bool:
    return bool(answer)


def poll(
    check: Callable[[], T],
    *,
    until: Callable[[T], bool] = _truthy,
    timeout_s: float = 30,
    interval_s: float = 0.05,
) -> T:
    """``check()`` until ``until`` holds for its answer (by default: the answer is truthy)."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if until(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(interval_s)


@overload
async def poll_async(
    check: Callable[[], Awaitable[T]],
    *,
    until: Callable[[T], bool] = ...,
    timeout_s: float = ...,
    interval_s: float = ...,
) -> T: ...


@overload
async def poll_async(
    check: Callable[[], T],
    *,
    until: Callable[[T], bool] = ...,
    timeout_s: float = ...,
    interval_s: float = ...,
) -> T: ...


async def poll_async(
    check: Callable[[], Any],
    *,
    until: Callable[[Any], bool] = _truthy,
    timeout_s: float = 30,
    interval_s: float = 0.05,
) -> Any:
    """:func:`poll` for a test on the event loop: ``check`` may be a coroutine function or a
    plain one, and the loop runs on between the asks."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = check()
        if inspect.isawaitable(answer):
            answer = await answer
        if until(answer) or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(interval_s)
