"""A text longer than a model's context, cut in parts the model takes: where to cut it, and how
servers say that a prompt is too long.

Nobody configures how much a model reads: a text is asked whole, and when the server refuses
it as longer than its context (:func:`says_context_overflow`), it is cut in two near its middle
(:func:`halves`) and each half is asked the same way, so parts are as large as the model
takes, whatever the backend. The Kafka LLM processor and the runner's document analysis read
long documents so.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

_OVERFLOW = re.compile(
    r"context (?:length|window|size)|model's context|context_length_exceeded"
    r"|exceed_context_size|prompt is too long",
    re.IGNORECASE,
)
"""How servers word a prompt longer than the context: PAS LLM services ("the model's context
is 1024 tokens"), vLLM and OpenAI ("maximum context length", ``context_length_exceeded``),
llama.cpp's server and Ollama asked ``truncate: false`` ("exceeds the available context
size"), Anthropic through the router ("prompt is too long")."""

# Where a part may end, the best first: a paragraph, a line, a sentence, a word.
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"[.!?;]\s"), re.compile(r"\s"))


def says_context_overflow(refusal: str) -> bool:
    """Whether a server's refusal (its message, or its body) says the prompt is longer than
    the model's context."""
    return bool(_OVERFLOW.search(refusal))


def halves(text: str) -> tuple[str, str] | None:
    """``text`` cut in two near its middle at the best break there is, or None when it cannot
    be cut (no break between two non-empty halves)."""
    middle = len(text) // 2
    for pattern in _BREAKS:
        ends = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
        if not ends:
            continue
        cut = min(ends, key=lambda end: abs(end - middle))
        first, second = text[:cut].strip(), text[cut:].strip()
        if first and second:
            return first, second
    return None


class TooManyParts(Exception):
    """A text needs more parts than allowed, or a refused part has no place left to cut."""


@dataclass
class PartCount:
    """The parts a text is read in so far, at most ``most`` (set by ``setting``)."""

    most: int
    setting: str
    count: int = 1

    def cut(self, text: str, refusal: Exception) -> tuple[str, str]:
        """``text``, which the server refused as too long, in two parts (one part more);
        raises :class:`TooManyParts`, saying the refusal, when that passes ``most`` or when
        ``text`` cannot be cut."""
        parts = halves(text)
        if parts is None:
            raise TooManyParts(
                f"a part of {len(text)} characters has no place to cut it and is still too "
                f"long: {refusal}"
            ) from refusal
        if self.count >= self.most:
            raise TooManyParts(
                f"the document is longer than {self.most} parts of the model's context hold "
                f"({self.setting}); a part was refused: {refusal}"
            ) from refusal
        self.count += 1
        return parts


async def read_each(parts: Sequence[str], read: Callable[[str], Coroutine[Any, Any, T]]) -> list[T]:
    """``read`` of every part, in order, all at once: a server that batches (the embedded
    model, vLLM) reads them together. The first failure stops the others and is raised as it
    is (not in an ``ExceptionGroup``)."""
    try:
        async with asyncio.TaskGroup() as group:
            tasks: list[asyncio.Task[T]] = [group.create_task(read(part)) for part in parts]
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def most_text(labels: Sequence[str], lengths: Sequence[int]) -> int:
    """Which part's label a text read in parts has: the label with the most text behind it
    (each part weighing its length), from the earliest part that gives it (a tie goes to the
    earlier part: a filing leads with its headline). The index of that part."""
    weight: Counter[str] = Counter()
    for label, length in zip(labels, lengths, strict=True):
        weight[label] += length
    top = max(weight.values())
    return next(index for index, label in enumerate(labels) if weight[label] == top)
