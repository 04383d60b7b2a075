"""A record aiokafka cannot read (a header name that is not UTF-8) is dead-lettered with its
coordinates; the records around it, in its batch, its partition and the others, are answered.

Before, aiokafka's ``getmany`` raised ``UnicodeDecodeError`` on it, every time: the processor
restarted and failed on the same record for good, and the other partitions stopped with it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import TopicPartition

from libs.common.schemas.documents import DocumentResult, FinancialDocument
from services.kafka_llm_processor.show_results import show
from tests.kafka_llm_processor.conftest import Topics, collect, send
from tests.kafka_llm_processor.test_processor import northwind_q3
from tests.support.asgi_server import serve_asgi
from tests.support.group_offsets import committed_offset
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder
from tests.support.unreadable_records import RawRecord, send_one_batch

CONTENT = "Revenue rose 12.4% to $89.5 billion."


def _doc(doc_id: str) -> FinancialDocument:
    return northwind_q3(doc_id, CONTENT, "summary")


def _raw(doc_id: str, *headers: tuple[bytes, bytes]) -> RawRecord:
    return RawRecord(doc_id.encode(), msgspec.json.encode(_doc(doc_id)), list(headers))


async def test_a_record_with_a_header_name_not_utf8_is_dead_lettered_and_the_rest_answered(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    def summary(_: dict[str, Any]) -> str:
        return json.dumps({"summary": CONTENT})

    elsewhere = ["p1-first", "p1-second", "p2-only"]
    with serve_asgi(OpenAIResponder(answer_for=summary)) as url:
        processor = start_processor(f"{url}/v1")
        # Partition 0: a record alone (offset 0), then one batch whose middle record has a
        # header name aiokafka cannot decode (offsets 1, 2, 3), then one more alone (4).
        await send(kafka_bootstrap, topics.input, _messages(["p0-before"]), partition=0)
        await send_one_batch(
            kafka_bootstrap,
            topics.input,
            0,
            [
                _raw("p0-batch-before", (b"source", b"feed-a")),
                _raw("unreadable", (b"source", b"feed-a"), (b"\xff\xfetrace", b"t-1")),
                _raw("p0-batch-after", (b"source", b"feed-a")),
            ],
        )
        await send(kafka_bootstrap, topics.input, _messages(["p0-after"]), partition=0)
        await send(kafka_bootstrap, topics.input, _messages(elsewhere[:2]), partition=1)
        await send(kafka_bootstrap, topics.input, _messages(elsewhere[2:]), partition=2)

        answered = ["p0-before", "p0-batch-before", "p0-batch-after", "p0-after", *elsewhere]
        results = await collect(kafka_bootstrap, topics.output, len(answered), timeout_s=60)
        letters = await collect(kafka_bootstrap, topics.dlq, 1, timeout_s=30)
        committed = await committed_offset(
            kafka_bootstrap,
            f"group-{topics.input}",
            TopicPartition(topics.input, 0),
            until=lambda offset: offset == 5,
        )
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{processor.url}/metrics")).text

    assert sorted(r.doc_id for r in results) == sorted(answered)
    [letter] = letters
    assert (letter.topic, letter.partition, letter.offset) == (topics.input, 0, 2)
    assert letter.error_type == "header_name_not_utf8"
    assert letter.error.startswith("record unreadable: header name not UTF-8")
    assert letter.key == "unreadable"
    # What aiokafka could not build is read from the batch itself: all of it is kept.
    assert msgspec.json.decode(letter.original, type=FinancialDocument) == _doc("unreadable")
    assert letter.original_bytes == len(msgspec.json.encode(_doc("unreadable")))
    assert letter.headers == {"source": "feed-a", "\ufffd\ufffdtrace": "t-1"}
    assert committed == 5
    dead_lettered = "pas_processor_documents_dead_lettered_total"
    assert sample_value(metrics, dead_lettered, reason="header_name_not_utf8") == 1


def _messages(doc_ids: list[str]) -> list[tuple[bytes, bytes]]:
    return [(doc_id.encode(), msgspec.json.encode(_doc(doc_id))) for doc_id in doc_ids]


async def test_the_results_viewer_names_a_record_it_cannot_read_and_shows_the_rest(
    kafka_bootstrap: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """``show_results`` called aiokafka's ``getmany`` itself: a result whose header name is
    not UTF-8 ended it in a ``UnicodeDecodeError``, showing nothing after it. It is named
    with its coordinates and passed over, as is a record that is not a result."""
    results = [_result(doc_id) for doc_id in ("first", "unreadable", "last")]
    raw = [RawRecord(r.doc_id.encode(), msgspec.json.encode(r)) for r in results]
    raw[1] = RawRecord(raw[1].key, raw[1].value, [(b"\xff\xfetrace", b"t-1")])
    await send_one_batch(kafka_bootstrap, topics.output, 0, raw)
    await send(kafka_bootstrap, topics.output, [(b"x", b"not a result")], partition=0)

    shown = await show(kafka_bootstrap, topics.output, dlq=False, expect=4, timeout_s=60)

    lines = capsys.readouterr().out.splitlines()
    assert (shown.messages, shown.unreadable) == (4, 2)
    named = [line for line in lines if line.startswith(("first", "last", "UNREADABLE"))]
    assert named[0].startswith("first  [summary, ok")
    assert named[1].startswith(
        f"UNREADABLE {topics.output}/0/1: record unreadable: header name not UTF-8"
    )
    assert named[2].startswith("last  [summary, ok")
    assert named[3].startswith(f"UNREADABLE {topics.output}/0/3: not a result: ")
    assert len(named) == 4


def _result(doc_id: str) -> DocumentResult:
    return DocumentResult(
        doc_id=doc_id,
        task="summary",
        status="ok",
        answer=CONTENT,
        model="smollm2",
        prompt_tokens=40,
        completion_tokens=12,
        processing_ms=120.0,
        attempts=1,
        source_offset=f"docs/0/{doc_id}",
        processed_at=datetime(2025, 1, 2, tzinfo=UTC),
    )
