"""The shared usage publisher: events reach the topic; with the broker away, publishing still
returns at once, the buffer stays bounded and every dropped event is counted."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
from prometheus_client import CollectorRegistry, generate_latest

from libs.common.kafka.topics import ensure_topics
from libs.common.kafka.usage_publisher import UsagePublisher
from libs.common.schemas.usage import UsageEvent, new_usage_event
from tests.analytics.conftest import read_topic
from tests.support.processes import free_port


def event(n: int) -> UsageEvent:
    return new_usage_event(
        service="test",
        provider="local",
        model="smollm2",
        status="ok",
        prompt_tokens=n,
        completion_tokens=1,
        latency_ms=12.5,
        workflow_id="w" * 300,  # longer than the schema allows: cut, never refused
    )


def exposition(publisher: UsagePublisher) -> str:
    registry = CollectorRegistry()
    for collector in publisher.collectors:
        registry.register(collector)
    return generate_latest(registry).decode()


async def test_published_events_reach_the_topic(kafka_bootstrap: str) -> None:
    topic = f"usage-{uuid.uuid4().hex[:8]}"
    await ensure_topics(kafka_bootstrap, {topic: 1})
    sent = [event(n) for n in range(25)]

    async with UsagePublisher(kafka_bootstrap, service="test", topic=topic) as publisher:
        accepted = [publisher.publish(e) for e in sent]

    received = [
        msgspec.json.decode(v, type=UsageEvent)
        for v in await read_topic(kafka_bootstrap, topic, 25)
    ]
    assert all(accepted)
    assert sorted(e.event_id for e in received) == sorted(e.event_id for e in sent)
    assert all(len(e.workflow_id or "") == 256 for e in received)
    text = exposition(publisher)
    assert 'pas_usage_events_published_total{service="test"} 25.0' in text
    assert 'pas_usage_events_dropped_total{reason="buffer_full",service="test"} 0.0' in text


async def test_a_broker_that_is_away_costs_a_bounded_buffer_and_counted_drops() -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    publisher = UsagePublisher(nowhere, service="test", max_buffered=5, shutdown_timeout_s=0.5)

    async with publisher:
        await asyncio.sleep(0.2)  # the publisher is trying to connect meanwhile
        accepted = [publisher.publish(event(n)) for n in range(12)]
        assert not publisher.connected.is_set()

    assert accepted == [True] * 5 + [False] * 7
    text = exposition(publisher)
    assert 'pas_usage_events_dropped_total{reason="buffer_full",service="test"} 7.0' in text
    assert 'pas_usage_events_dropped_total{reason="shutdown",service="test"} 5.0' in text
    assert 'pas_usage_events_published_total{service="test"} 0.0' in text
