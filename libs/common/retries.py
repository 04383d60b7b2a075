"""stamina's retries without stamina's setup cost on calls that succeed at once.

Entering ``stamina.retry_context`` builds a tenacity retrier, which inspects the callables it
is given: 160-450 µs a use measured on the shared 2-core development machine, paid by every
call even when nothing is retried. On a hot path (the Kafka LLM processor makes an LLM call and a
publication per document) that is as much as a whole consume-produce round of aiokafka.
``retried`` makes the first attempt bare; only when it fails with an error ``on`` retries does
stamina take over, its first attempt re-raising that failure without calling again. So the
attempts counted, the backoff schedule and stamina's retry hooks (logging, metrics, tests'
instrumentation) are those of ``stamina.retry_context`` with the same arguments; only its
``give_up_after_s`` (stamina's ``timeout``) starts counting after the first attempt.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import stamina

from libs.common.clients.llm_errors import LLMError

T = TypeVar("T")

RetryOn = type[Exception] | tuple[type[Exception], ...] | Callable[[Exception], bool | float]
"""As stamina's ``on``: the errors to retry, or a hook saying whether to retry an error, or
after how many seconds (a server's ``Retry-After``, in place of the backoff's wait)."""


def _retries(on: RetryOn, exc: Exception) -> bool:
    if isinstance(on, type | tuple):
        return isinstance(exc, on)
    verdict = on(exc)
    return verdict is not False


def retry_llm_errors(kind: type[LLMError]) -> Callable[[Exception], bool | float]:
    """A hook retrying errors of ``kind``, after the wait the server asked for where it asked
    one (``retry_after_s``, a 429's or 503's ``Retry-After``), else after the backoff's."""

    def hook(exc: Exception) -> bool | float:
        if not isinstance(exc, kind):
            return False
        return True if exc.retry_after_s is None else exc.retry_after_s

    return hook


async def retried(
    call: Callable[[], Awaitable[T]],
    *,
    on: RetryOn,
    attempts: int | None,
    give_up_after_s: float | None,
    wait_initial: float,
    wait_max: float,
    wait_jitter: float,
) -> T:
    """``await call()``, retried as ``stamina.retry_context`` with these arguments would."""
    try:
        return await call()
    except Exception as exc:
        if not _retries(on, exc):
            raise
        first: Exception | None = exc
    async for attempt in stamina.retry_context(
        on=on,
        attempts=attempts,
        timeout=give_up_after_s,
        wait_initial=wait_initial,
        wait_max=wait_max,
        wait_jitter=wait_jitter,
    ):
        with attempt:
            if first is not None:
                failed, first = first, None
                raise failed
            return await call()
    raise AssertionError("unreachable: stamina returns or raises")
