"""Several choices of one chat completion (OpenAI's ``n``): each its own generation of the
same request, run side by side (the embedded engine decodes them in one batch, up to its
``parallel`` slots), answered together or streamed as they come, each chunk naming its choice.

Each choice draws on its own: with a ``seed``, choice ``i`` is drawn with ``seed + i``, so the
set is reproducible and its members differ; at temperature 0 they are all the greedy answer.
A choice that fails fails the request, and the others are stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TypeVar

import msgspec

from services.llm.backends.base import Completion, Generation, StreamEvent
from services.llm.runtime import LLMRuntime

T = TypeVar("T")


def choice_generations(generation: Generation, n: int) -> list[Generation]:
    """The generation of each of ``n`` choices."""
    if n == 1:
        return [generation]
    seed = generation.seed
    return [
        msgspec.structs.replace(generation, seed=None if seed is None else seed + index)
        for index in range(n)
    ]


async def answer_all(
    runtime: LLMRuntime, endpoint: str, generations: list[Generation]
) -> list[Completion]:
    """Every choice's answer, in order; the first failure is raised and the rest cancelled."""
    if len(generations) == 1:
        return [await runtime.answer(endpoint, generations[0])]
    tasks = [asyncio.ensure_future(runtime.answer(endpoint, g)) for g in generations]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:  # after a failure (or the client leaving) the others stop
            task.cancel()


async def open_all(
    runtime: LLMRuntime, endpoint: str, generations: list[Generation]
) -> list[AsyncGenerator[StreamEvent, None]]:
    """Every choice's stream, opened together (so that their prompts and first tokens are read
    side by side); if one cannot open, those that did are closed and its error raised."""
    if len(generations) == 1:
        return [await runtime.open_stream(endpoint, generations[0])]
    opened = await asyncio.gather(
        *(runtime.open_stream(endpoint, g) for g in generations), return_exceptions=True
    )
    streams = [stream for stream in opened if not isinstance(stream, BaseException)]
    failures = [failure for failure in opened if isinstance(failure, BaseException)]
    if failures:
        for stream in streams:
            await stream.aclose()
        raise failures[0]
    return streams


def merged(streams: list[AsyncGenerator[T, None]]) -> AsyncGenerator[tuple[int, T], None]:
    """The items of every stream as each comes, with its stream's index; each stream's own
    order is kept. Closing this stops the waits it has in hand (the streams are the
    caller's to close). A lone stream is read as it is (no wait to hand over per item)."""
    return _indexed(streams[0]) if len(streams) == 1 else _merged(streams)


async def _indexed(stream: AsyncGenerator[T, None]) -> AsyncGenerator[tuple[int, T], None]:
    async for item in stream:
        yield 0, item


async def _merged(streams: list[AsyncGenerator[T, None]]) -> AsyncGenerator[tuple[int, T], None]:
    waiting = {asyncio.ensure_future(anext(stream)): index for index, stream in enumerate(streams)}
    try:
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                index = waiting.pop(task)
                try:
                    item = task.result()
                except StopAsyncIteration:
                    continue
                waiting[asyncio.ensure_future(anext(streams[index]))] = index
                yield index, item
    finally:
        for task in waiting:
            task.cancel()
        # A stream cannot be closed while a wait is still running inside it.
        await asyncio.gather(*waiting, return_exceptions=True)
