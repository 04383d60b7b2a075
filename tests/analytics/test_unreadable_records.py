"""A record aiokafka cannot read (a header name that is not UTF-8) goes to ``analytics-dlq``
with its coordinates and is counted; the records around it, in its batch, its partition, the
other partitions and topics, are stored, and the offset past it is committed.

Before, aiokafka's ``getmany`` raised ``UnicodeDecodeError`` on it at every try: the collector
restarted and failed on the same record for good, and nothing after it was stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaProducer, TopicPartition

from libs.common.schemas.documents import DeadLetter
from tests.analytics.conftest import (
    Topics,
    encode_event,
    read_topic,
    totals,
    usage_event,
    utc_now,
    wait_until,
)
from tests.support.group_offsets import committed_offset
from tests.support.metrics_text import sample_value
from tests.support.processes import ServiceProcess
from tests.support.unreadable_records import RawRecord, send_one_batch


async def _send(bootstrap: str, topic: str, partition: int, events: list[dict[str, Any]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic, encode_event(event), partition=partition)
    finally:
        await producer.stop()


async def test_a_record_with_a_header_name_not_utf8_is_dead_lettered_and_the_rest_stored(
    kafka_bootstrap: str, topics: Topics, start_collector: Callable[..., ServiceProcess]
) -> None:
    now = utc_now()
    events = {name: usage_event(now, event_id=name) for name in _USAGE}
    bad = usage_event(now, event_id="unreadable")
    run = _completed_run(now, "run-elsewhere")

    def raw(event: dict[str, Any], *headers: tuple[bytes, bytes]) -> RawRecord:
        return RawRecord(None, encode_event(event), [(b"source", b"router"), *headers])

    # Usage partition 0: an event alone (offset 0), one batch whose middle record has a header
    # name aiokafka cannot decode (1, 2, 3), one more alone (4); then the other partitions and
    # another topic, all there before the collector's first fetch.
    await _send(kafka_bootstrap, topics.usage, 0, [events["p0-before"]])
    await send_one_batch(
        kafka_bootstrap,
        topics.usage,
        0,
        [
            raw(events["p0-batch-before"]),
            raw(bad, (b"\xff\xfetrace", b"t-1")),
            raw(events["p0-batch-after"]),
        ],
    )
    await _send(kafka_bootstrap, topics.usage, 0, [events["p0-after"]])
    await _send(kafka_bootstrap, topics.usage, 1, [events["p1-first"], events["p1-second"]])
    await _send(kafka_bootstrap, topics.usage, 2, [events["p2-only"]])
    await _send(kafka_bootstrap, topics.workflow_results, 0, [run])
    collector = start_collector()

    answer = await wait_until(
        lambda: totals(collector.url),
        lambda body: body["total"]["llm_calls"] >= len(events),
    )
    letters = [
        msgspec.json.decode(value, type=DeadLetter)
        for value in await read_topic(kafka_bootstrap, topics.dlq, 1)
    ]
    committed = await committed_offset(
        kafka_bootstrap,
        f"analytics-{topics.usage}",
        TopicPartition(topics.usage, 0),
        until=lambda offset: offset == 5,
    )
    async with httpx.AsyncClient(base_url=collector.url) as http:
        exported = (await http.get("/reports/export", params={"format": "json"})).text
        runs = (await http.get("/analytics/workflows")).json()["workflows"]
        metrics = (await http.get("/metrics")).text

    assert answer["total"]["llm_calls"] == len(events)
    stored = sorted(json.loads(line)["event_id"] for line in exported.splitlines())
    assert stored == sorted(events)
    assert [(w["workflow_id"], w["runs"]) for w in runs] == [("document_analysis", 1)]
    [letter] = letters
    assert (letter.topic, letter.partition, letter.offset) == (topics.usage, 0, 2)
    assert letter.error_type == "header_name_not_utf8"
    assert letter.error.startswith("record unreadable: header name not UTF-8")
    # What aiokafka could not build is read from the batch itself: all of it is kept.
    assert json.loads(letter.original) == bad
    assert letter.headers == {"source": "router", "\ufffd\ufffdtrace": "t-1"}
    assert committed == 5
    dead_lettered = "pas_analytics_events_dead_lettered_total"
    assert sample_value(metrics, dead_lettered, topic=topics.usage) == 1
    assert sample_value(metrics, dead_lettered, reason="header_name_not_utf8") == 1


def _completed_run(now: datetime, run_id: str) -> dict[str, Any]:
    """A ``workflow-results`` event as the LangGraph runner publishes it."""
    return {
        "event_id": f"evt-{run_id}",
        "event_type": "workflow.completed",
        "timestamp": now.isoformat(),
        "source": "langgraph_runner",
        "workflow_id": "document_analysis",
        "workflow_run_id": run_id,
        "payload": {
            "run_id": run_id,
            "status": "success",
            "steps": 3,
            "started_at": (now - timedelta(seconds=2)).isoformat(),
            "finished_at": now.isoformat(),
            "duration_ms": 2000.0,
        },
    }


_USAGE = ["p0-before", "p0-batch-before", "p0-batch-after", "p0-after", "p1-first", "p1-second"]
_USAGE += ["p2-only"]
