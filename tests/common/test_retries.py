"""``retried``: the first attempt bare, then stamina's retries exactly as stamina schedules them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stamina
from stamina.instrumentation import RetryDetails

from libs.common.clients.llm_errors import LLMTransientError
from libs.common.retries import retried, retry_llm_errors


@pytest.fixture
def retries() -> Iterator[list[RetryDetails]]:
    seen: list[RetryDetails] = []

    def hook(details: RetryDetails) -> None:
        seen.append(details)

    before = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([*before, hook])
    yield seen
    stamina.instrumentation.set_on_retry_hooks(before)


class Flaky:
    """Fails with each of ``failures`` in turn, then answers how many calls it took."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return self.calls


async def _retried(call: Flaky, attempts: int = 4) -> int:
    return await retried(
        call,
        on=ConnectionError,
        attempts=attempts,
        give_up_after_s=None,
        wait_initial=0.01,
        wait_max=0.05,
        wait_jitter=0.01,
    )


async def test_a_call_that_succeeds_at_once_is_made_once(retries: list[RetryDetails]) -> None:
    assert await _retried(Flaky()) == 1
    assert retries == []


async def test_failures_it_retries_are_retried_as_stamina_would(
    retries: list[RetryDetails],
) -> None:
    first, second = ConnectionError("one"), ConnectionError("two")

    assert await _retried(Flaky(first, second)) == 3
    # stamina saw both failures, the first one included, and scheduled a retry after each.
    assert [r.retry_num for r in retries] == [1, 2]
    assert [r.caused_by for r in retries] == [first, second]


async def test_the_last_attempt_fails_with_its_own_error(retries: list[RetryDetails]) -> None:
    call = Flaky(*(ConnectionError(str(n)) for n in range(5)))

    with pytest.raises(ConnectionError, match="2"):
        await _retried(call, attempts=3)
    assert call.calls == 3
    assert len(retries) == 2


async def test_an_error_it_does_not_retry_fails_at_once(retries: list[RetryDetails]) -> None:
    call = Flaky(ValueError("never"))

    with pytest.raises(ValueError, match="never"):
        await _retried(call)
    assert call.calls == 1
    assert retries == []


async def test_a_wait_the_server_asked_for_replaces_the_backoff(
    retries: list[RetryDetails],
) -> None:
    """A 429 whose Retry-After said 0.3 s: the next attempt comes after that, not after the
    backoff's 0.01 to 0.02 s; an error that said nothing keeps the backoff."""
    asked = LLMTransientError("429", status=429, retry_after_s=0.3)
    unsaid = LLMTransientError("503", status=503)

    assert (
        await retried(
            Flaky(asked, unsaid),
            on=retry_llm_errors(LLMTransientError),
            attempts=4,
            give_up_after_s=None,
            wait_initial=0.01,
            wait_max=0.05,
            wait_jitter=0.01,
        )
        == 3
    )
    assert retries[0].wait_for == pytest.approx(0.3)
    assert retries[1].wait_for <= 0.05
