"""The collector as a real process on a real broker: every topic it reads, duplicates stored
once, undecodable records in the DLQ with the reason, and no loss across a SIGKILL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import msgspec
from aiokafka import AIOKafkaProducer

from libs.common.schemas.documents import DeadLetter, DocumentResult
from tests.analytics.conftest import (
    Topics,
    encode_event,
    known_events,
    produce,
    read_topic,
    totals,
    usage_event,
    utc_now,
    wait_until,
)
from tests.support.processes import ServiceProcess


async def test_every_topic_reaches_the_store_once_and_bad_records_reach_the_dlq(
    kafka_bootstrap: str, topics: Topics, start_collector: Callable[..., ServiceProcess]
) -> None:
    collector = start_collector()
    now = utc_now()
    usage, _ = known_events(now, count=40, runs=0)
    duplicates = usage[:5]
    completed: dict[str, Any] = {
        "event_id": "evt-1",
        "event_type": "workflow.completed",
        "timestamp": now.isoformat(),
        "source": "langgraph_runner",
        "workflow_id": "document_analysis",
        "workflow_run_id": "run-ok",
        "payload": {
            "run_id": "r1",
            "status": "success",
            "steps": 3,
            "started_at": (now - timedelta(seconds=2)).isoformat(),
            "finished_at": now.isoformat(),
            "duration_ms": 2000.0,
        },
    }
    failed = {**completed, "event_type": "workflow.failed", "workflow_run_id": "run-bad"}
    failed["payload"] = {**completed["payload"], "status": "error", "error": "model down"}
    progress = {**completed, "event_type": "workflow.progress", "workflow_run_id": "run-x"}
    result = DocumentResult(
        doc_id="doc-1",
        task="summary",
        status="ok",
        answer="Revenue rose.",
        model="smollm2",
        prompt_tokens=50,
        completion_tokens=9,
        processing_ms=812.5,
        attempts=1,
        source_offset="financial-documents/0/41",
        processed_at=now,
    )
    letter = DeadLetter(
        error="timed out",
        error_type="TransientLLMError",
        attempts=4,
        topic="financial-documents",
        partition=0,
        offset=42,
        key="doc-2",
        original=json.dumps({"doc_id": "doc-2", "task": "sentiment"}),
        failed_at=now,
    )

    await produce(kafka_bootstrap, topics.usage, [encode_event(e) for e in usage + duplicates])
    await produce(
        kafka_bootstrap,
        topics.usage,
        [b"{not json", encode_event({**usage[0], "event_id": "bad-1", "prompt_tokens": "many"})],
    )
    await produce(
        kafka_bootstrap,
        topics.workflow_results,
        [encode_event(e) for e in (completed, failed, progress)],
    )
    await produce(
        kafka_bootstrap,
        topics.workflow_results,
        [encode_event({"event_type": "workflow.completed"})],
    )
    await produce(kafka_bootstrap, topics.llm_results, [msgspec.json.encode(result)] * 2)
    await produce(kafka_bootstrap, topics.documents_dlq, [msgspec.json.encode(letter)])
    # Nested past what a decoder follows (a RecursionError, not a DecodeError): refused as
    # any bad record is, not a batch that fails at every try; a letter of such a document
    # counts as a failed document of no known task.
    deep = b"[" * 100_000 + b"]" * 100_000
    await produce(kafka_bootstrap, topics.usage, [b'{"x": ' + deep + b"}"])
    await produce(kafka_bootstrap, topics.workflow_results, [b'{"payload": ' + deep + b"}"])
    await produce(kafka_bootstrap, topics.llm_results, [b'{"x": ' + deep + b"}"])
    deep_letter = msgspec.structs.replace(
        letter, offset=43, key="doc-3", original='{"doc_id": ' + deep.decode() + "}"
    )
    await produce(kafka_bootstrap, topics.documents_dlq, [msgspec.json.encode(deep_letter)])

    answer = await wait_until(
        lambda: totals(collector.url),
        lambda body: body["total"]["llm_calls"] >= len(usage),
    )
    letters = [
        msgspec.json.decode(v, type=DeadLetter)
        for v in await read_topic(kafka_bootstrap, topics.dlq, 6)
    ]
    async with httpx.AsyncClient(base_url=collector.url) as http:
        workflows = await wait_until(
            lambda: _workflows(http),
            lambda found: len(found) >= 4,
        )
        metrics = (await http.get("/metrics")).text

    assert answer["total"]["llm_calls"] == len(usage)
    assert Decimal(str(answer["total"]["cost_usd"])) == sum(
        (Decimal(str(e["cost_usd"])) for e in usage), Decimal(0)
    )
    assert sorted(letter.error_type for letter in letters) == [
        "invalid_llm_results",
        "invalid_usage",
        "invalid_usage",
        "invalid_usage",
        "invalid_workflow_results",
        "invalid_workflow_results",
    ]
    # Refused as they were read: nothing of them was tried.
    assert {letter.attempts for letter in letters} == {0}
    too_deep = [letter for letter in letters if letter.error == "nested too deep to read"]
    assert len(too_deep) == 3
    by_type = {letter.original: letter for letter in letters}
    assert by_type["{not json"].topic == topics.usage
    assert "prompt_tokens" in next(x.error for x in letters if "bad-1" in x.original)
    assert workflows["document_analysis"] == (2, 1)
    assert workflows["kafka_llm_processor.summary"] == (1, 1)
    assert workflows["kafka_llm_processor.sentiment"] == (1, 0)
    assert workflows["kafka_llm_processor.unknown"] == (1, 0)
    assert "run-x" not in str(workflows)
    assert f'pas_analytics_events_ignored_total{{topic="{topics.workflow_results}"}} 1.0' in (
        metrics
    )


async def test_partitions_read_by_arrow_and_by_msgspec_in_one_batch_are_each_stored_once(
    kafka_bootstrap: str, topics: Topics, start_collector: Callable[..., ServiceProcess]
) -> None:
    """Partition 0 holds events with an escaped quote (valid, but left to msgspec by the
    Arrow reader, usage_json.py); partitions 1 and 2 hold events the Arrow reader takes. All
    are on the topic before the collector starts, so a batch may hold both."""
    now = utc_now()
    usage, _ = known_events(now, count=90, runs=0)
    for event in usage[:30]:
        event["error"] = 'upstream said "busy"'
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    await producer.start()
    try:
        for index, event in enumerate(usage):
            await producer.send(
                topics.usage, value=encode_event(event), partition=min(index // 30, 2)
            )
        await producer.flush()
    finally:
        await producer.stop()
    collector = start_collector()

    answer = await wait_until(
        lambda: totals(collector.url),
        lambda body: body["total"]["llm_calls"] >= len(usage),
    )
    async with httpx.AsyncClient(base_url=collector.url) as http:
        exported = (await http.get("/reports/export", params={"format": "json"})).text
        metrics = (await http.get("/metrics")).text
    stored = {row["event_id"]: row for row in map(json.loads, exported.splitlines())}

    assert answer["total"]["llm_calls"] == len(usage)
    assert sorted(stored) == sorted(e["event_id"] for e in usage)
    assert all(stored[e["event_id"]]["error"] == e.get("error") for e in usage)
    assert 'pas_analytics_usage_records_read_total{reader="arrow"} 60.0' in metrics
    assert 'pas_analytics_usage_records_read_total{reader="msgspec"} 30.0' in metrics


async def _workflows(http: httpx.AsyncClient) -> dict[str, tuple[int, int]]:
    body = (await http.get("/analytics/workflows")).json()
    return {w["workflow_id"]: (w["runs"], w["successes"]) for w in body["workflows"]}


async def test_a_killed_collector_loses_no_event_and_counts_none_twice(
    kafka_bootstrap: str, topics: Topics, start_collector: Callable[..., ServiceProcess]
) -> None:
    # A short session: the group hands the dead collector's partitions on sooner.
    first = start_collector(ANALYTICS_BATCH_MAX="50", ANALYTICS_SESSION_TIMEOUT_S="6")
    now = utc_now()
    batch_a = [usage_event(now, cost_usd=0.001) for _ in range(1500)]
    batch_b = [usage_event(now, cost_usd=0.002) for _ in range(500)]
    await produce(kafka_bootstrap, topics.usage, [encode_event(e) for e in batch_a])

    # Kill it while it is working through the backlog: some batches stored, some not.
    partial = await wait_until(
        lambda: totals(first.url), lambda body: body["total"]["llm_calls"] > 0, interval_s=0.05
    )
    first.kill()
    await produce(kafka_bootstrap, topics.usage, [encode_event(e) for e in batch_b])
    second = start_collector(ANALYTICS_SESSION_TIMEOUT_S="6")

    answer = await wait_until(
        lambda: totals(second.url),
        lambda body: body["total"]["llm_calls"] >= len(batch_a) + len(batch_b),
    )
    async with httpx.AsyncClient(base_url=second.url) as http:
        exported = (await http.get("/reports/export", params={"format": "json"})).text
    ids = [json.loads(line)["event_id"] for line in exported.splitlines()]

    assert partial["total"]["llm_calls"] < len(batch_a) + len(batch_b)
    assert answer["total"]["llm_calls"] == len(batch_a) + len(batch_b)
    assert answer["total"]["cost_usd"] == 2.5
    assert sorted(ids) == sorted(e["event_id"] for e in batch_a + batch_b)
    assert len(ids) == len(set(ids))
    assert uuid.UUID(ids[0])  # ids are the producers' own
