"""Two collectors in one consumer group on one PostgreSQL count every event exactly once: the
partitions are shared between them, one is SIGKILLed mid-stream (what it had read and not
committed is read again by the other), and the totals are the events', to the cent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from tests.analytics.conftest import (
    NO_POSTGRES,
    PG_OBJECTS,
    POSTGRES_DSN,
    Topics,
    encode_event,
    known_events,
    produce,
    totals,
    utc_now,
    wait_until,
)
from tests.support.processes import ServiceProcess

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not POSTGRES_DSN, reason=NO_POSTGRES),
    pytest.mark.timeout(300),
]

EVENTS = 6_000


async def _stored_calls(url: str) -> int:
    try:
        calls: int = (await totals(url))["total"]["llm_calls"]
    except httpx.HTTPError:
        return -1
    return calls


async def test_two_collectors_on_postgresql_count_every_event_once(
    kafka_bootstrap: str, topics: Topics, start_collector: Any
) -> None:
    async with await psycopg.AsyncConnection.connect(POSTGRES_DSN, autocommit=True) as conn:
        for statement in PG_OBJECTS:
            await conn.execute(statement)
    usage, _ = known_events(utc_now(), count=EVENTS, runs=0, seed=11)
    first, rest = usage[: EVENTS // 2], usage[EVENTS // 2 :]
    collectors: list[ServiceProcess] = [
        start_collector(ANALYTICS_DATABASE_URL=POSTGRES_DSN, ANALYTICS_BATCH_MAX="200")
        for _ in range(2)
    ]

    await produce(kafka_bootstrap, topics.usage, [encode_event(e) for e in first])
    # Some of the first half stored, then one collector dies without a word.
    await wait_until(lambda: _stored_calls(collectors[1].url), lambda calls: calls >= 1_000)
    collectors[0].kill()
    # Producers retry too: a tenth of the events arrive twice.
    again = first[::10]
    await produce(kafka_bootstrap, topics.usage, [encode_event(e) for e in rest + again])
    answer = await wait_until(
        lambda: totals(collectors[1].url),
        lambda body: body["total"]["llm_calls"] >= EVENTS,
        timeout_s=180,
    )
    # Settled: nothing more arrives later (a late duplicate would push the count past).
    replacement = start_collector(ANALYTICS_DATABASE_URL=POSTGRES_DSN)
    settled = await wait_until(
        lambda: totals(replacement.url), lambda body: False, timeout_s=3, interval_s=1
    )

    assert answer["total"]["llm_calls"] == EVENTS
    assert settled["total"]["llm_calls"] == EVENTS
    assert Decimal(str(settled["total"]["cost_usd"])) == sum(
        (Decimal(str(e["cost_usd"])) for e in usage), Decimal(0)
    )
    assert settled["total"]["prompt_tokens"] == sum(e["prompt_tokens"] for e in usage)
