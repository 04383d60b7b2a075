"""Answers kept for requests asked again: a chat completion at temperature 0 (one choice,
not streamed) or embeddings, the same body to the same route, within ``ROUTER_CACHE_TTL_S``.

A hit costs no call and no spend. Identical requests that arrive while the first is still
being answered wait for its answer instead of each making the call (``coalesced``). The
request header ``Cache-Control: no-cache`` asks for a fresh answer (which is then kept),
``no-store`` for one neither taken from nor kept in the cache. Memory is bounded by bytes;
the least recently used answers go first. Per router process, in memory; per desk key (the
router's own token is one more), so that one desk never learns what another asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import msgspec

Outcome = Literal["hit", "miss", "coalesced"]
Answer = tuple[bytes, dict[str, str]]
"""A response body and the routing headers it was served with."""


def cache_key(operation: str, body: Mapping[str, Any], route: tuple[object, ...]) -> bytes | None:
    """The key of a request whose answer may be kept, or None. ``route``: what besides the
    body decides where it goes (capability, model, strategy, prefer_local) or whose it is."""
    if operation == "chat" and (
        body.get("stream") or body.get("temperature") != 0 or body.get("n", 1) != 1
    ):
        return None  # an answer sampled, or streamed: each request gets its own
    # Sorted keys: the same request written in another order is the same request.
    identity = msgspec.json.encode([operation, list(route), body], order="sorted")
    return hashlib.sha256(identity).digest()


class AnswerCache:
    """``ttl_s`` 0 keeps nothing. ``clock`` is monotonic seconds."""

    def __init__(
        self, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._kept: OrderedDict[bytes, tuple[float, Answer]] = OrderedDict()
        self._pending: dict[bytes, asyncio.Future[Answer]] = {}
        self.bytes = 0

    @property
    def enabled(self) -> bool:
        return self.ttl_s > 0

    async def answer(
        self,
        key: bytes,
        make: Callable[[], Awaitable[Answer]],
        *,
        lookup: bool = True,
    ) -> tuple[Answer, Outcome]:
        """The kept answer for ``key`` (unless ``lookup`` is false), else the one ``make``
        gives, kept."""
        if lookup:
            kept = self._fresh(key)
            if kept is not None:
                return kept, "hit"
            pending = self._pending.get(key)
            if pending is not None:
                try:
                    # Shielded: a waiter leaving must not cancel the call the first one makes.
                    return await asyncio.shield(pending), "coalesced"
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if not pending.cancelled() or (task is not None and task.cancelling()):
                        raise
                    # The first request left before its answer came: this one asks itself.
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            made = await make()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here: no "never retrieved" warning without waiters
            raise
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]
        future.set_result(made)
        self._keep(key, made)
        return made, "miss"

    def _fresh(self, key: bytes) -> Answer | None:
        entry = self._kept.get(key)
        if entry is None:
            return None
        stored_at, answer = entry
        if self._clock() - stored_at > self.ttl_s:
            self._drop(key)
            return None
        self._kept.move_to_end(key)
        return answer

    def _keep(self, key: bytes, answer: Answer) -> None:
        size = len(answer[0])
        if size > self.max_bytes:
            return
        if key in self._kept:
            self._drop(key)
        self._kept[key] = (self._clock(), answer)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._kept)))

    def _drop(self, key: bytes) -> None:
        _, (payload, _) = self._kept.pop(key)
        self.bytes -= len(payload)
