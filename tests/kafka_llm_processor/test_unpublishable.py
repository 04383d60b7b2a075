"""A record that cannot be published as it is never stalls its partition.

A document near the broker's 1 MiB limit that the LLM refuses goes to the DLQ clipped (its first
bytes, its size and sha256); when the DLQ will not take it either, it goes to the processor's
spill file; either way later documents of the same partition are answered and the group's
committed offset moves past it. When even the spill file cannot be written, the commits stop
below it, so a restarted processor gets it again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import msgspec
from aiokafka import TopicPartition

from libs.common.kafka.records import DEAD_LETTER_ORIGINAL_BYTES
from libs.common.kafka.spill import SpilledRecord
from services.kafka_llm_processor.send_samples import documents
from tests.kafka_llm_processor.conftest import (
    Topics,
    as_messages,
    collect,
    metrics_showing,
    send,
)
from tests.support.asgi_server import serve_asgi
from tests.support.group_offsets import committed_offset
from tests.support.openai_responder import OpenAIResponder

NEAR_LIMIT = 1_038_090  # 0.99 MiB: fits the broker's and the producer's 1 MiB, barely
CONTEXT_CHARS = 100_000
# A topic name no Kafka broker accepts (at most 249 characters): a DLQ that cannot exist.
NO_SUCH_TOPIC = "dlq-" + "x" * 250
NOWHERE = 'pas_processor_records_unpublishable_total{recorded="nowhere"} 1.0'


class ShortContextResponder(OpenAIResponder):
    """Refuses a prompt longer than its context window with OpenAI's 400
    ``context_length_exceeded``, as OpenAI-compatible servers do; answers the others."""

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        prompt = sum(len(m.get("content", "")) for m in request.get("messages", []))
        if prompt <= CONTEXT_CHARS:
            await super()._answer(request, send)
            return
        body = msgspec.json.encode(
            {
                "error": {
                    "message": f"This model's maximum context length is {CONTEXT_CHARS}",
                    "type": "invalid_request_error",
                    "code": "context_length_exceeded",
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})


def near_limit_document(doc_id: str) -> bytes:
    """A summary request of ``NEAR_LIMIT`` bytes, quoting its sources line by line (quotes and
    line breaks are escaped once more in an envelope that carries the document as text)."""
    doc = msgspec.structs.replace(documents(1)[0], doc_id=doc_id, task="summary", content="")
    line = 'The CFO said: "Net revenue rose 4% on services; hardware sales fell."\n'
    room = NEAR_LIMIT - len(msgspec.json.encode(doc))
    content = line * (room // len(msgspec.json.encode(line)))
    content += "x" * (room - len(msgspec.json.encode(content)) + 2)
    value = msgspec.json.encode(msgspec.structs.replace(doc, content=content))
    assert len(value) == NEAR_LIMIT
    return value


def around_a_big_one(big_id: str) -> tuple[list[tuple[bytes, bytes]], list[str]]:
    """One small document, the near-limit one, two small ones: offsets 0 to 3."""
    small = [msgspec.structs.replace(d, task="summary") for d in documents(3)]
    messages = as_messages(small)
    messages.insert(1, (big_id.encode(), near_limit_document(big_id)))
    return messages, [d.doc_id for d in small]


async def test_a_near_limit_document_the_llm_refuses_is_dead_lettered_clipped_and_commits_move_on(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    messages, small_ids = around_a_big_one("big-report")
    with serve_asgi(ShortContextResponder()) as url:
        # Never in parts: the server's refusal is what this test follows to the DLQ.
        processor = start_processor(f"{url}/v1", PROCESSOR_MAX_PARTS="1")
        await send(kafka_bootstrap, topics.input, messages, partition=0)

        letters = await collect(kafka_bootstrap, topics.dlq, 1, timeout_s=60)
        results = await collect(kafka_bootstrap, topics.output, len(small_ids), timeout_s=60)
        committed = await committed_offset(
            kafka_bootstrap,
            f"group-{topics.input}",
            TopicPartition(topics.input, 0),
            until=lambda offset: offset == 4,
        )

    big = messages[1][1]
    assert [letter.key for letter in letters] == ["big-report"]
    letter = letters[0]
    assert letter.error_type == "PermanentLLMError"
    assert "context_length_exceeded" in letter.error
    assert (letter.partition, letter.offset) == (0, 1)
    assert letter.original_clipped is True
    assert letter.original_bytes == len(big)
    assert letter.original_sha256 == hashlib.sha256(big).hexdigest()
    assert letter.original.encode() == big[:DEAD_LETTER_ORIGINAL_BYTES]
    # The documents after it on its partition are answered, and committed past it.
    assert sorted(r.doc_id for r in results) == sorted(small_ids)
    assert committed == 4
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{processor.url}/metrics")).text
    assert 'pas_processor_documents_dead_lettered_total{reason="PermanentLLMError"} 1.0' in metrics


async def test_a_record_the_dlq_will_not_take_is_spilled_to_disk_and_commits_move_on(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    messages, small_ids = around_a_big_one("big-filing")
    with serve_asgi(ShortContextResponder()) as url:
        processor = start_processor(
            f"{url}/v1",
            DLQ_TOPIC=NO_SUCH_TOPIC,
            PROCESSOR_PUBLISH_DEADLINE_S="10",
            PROCESSOR_SPILL_DIR=str(spill_dir),
            PROCESSOR_MAX_PARTS="1",
        )
        await send(kafka_bootstrap, topics.input, messages, partition=0)

        results = await collect(kafka_bootstrap, topics.output, len(small_ids), timeout_s=60)
        committed = await committed_offset(
            kafka_bootstrap,
            f"group-{topics.input}",
            TopicPartition(topics.input, 0),
            until=lambda offset: offset == 4,
        )
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{processor.url}/metrics")).text

    assert sorted(r.doc_id for r in results) == sorted(small_ids)
    assert committed == 4
    lines = (spill_dir / "spilled.jsonl").read_bytes().splitlines()
    assert len(lines) == 1
    spilled = msgspec.json.decode(lines[0], type=SpilledRecord)
    # Byte for byte, where it came from, why it failed and why no topic took it.
    assert (spilled.topic, spilled.partition, spilled.offset) == (topics.input, 0, 1)
    assert spilled.key == b"big-filing"
    assert spilled.value == messages[1][1]
    assert spilled.error_type == "PermanentLLMError"
    assert any(NO_SUCH_TOPIC in refusal for refusal in spilled.refused)
    assert 'pas_processor_records_unpublishable_total{recorded="spill"} 1.0' in metrics
    assert "spilled" in processor.logs()


async def test_when_the_spill_file_cannot_be_written_commits_stop_below_the_record(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "not-a-directory"
    not_a_directory.write_text("a file where the spill directory should be")
    messages, small_ids = around_a_big_one("big-memo")
    group = f"group-{topics.input}"
    tp = TopicPartition(topics.input, 0)
    with serve_asgi(ShortContextResponder()) as url:
        first = start_processor(
            f"{url}/v1",
            DLQ_TOPIC=NO_SUCH_TOPIC,
            PROCESSOR_PUBLISH_DEADLINE_S="10",
            PROCESSOR_SPILL_DIR=str(not_a_directory / "spill"),
            PROCESSOR_MAX_PARTS="1",
        )
        await send(kafka_bootstrap, topics.input, messages, partition=0)
        results = await collect(kafka_bootstrap, topics.output, len(small_ids), timeout_s=60)
        metrics = await metrics_showing(first.url, NOWHERE)
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"{first.url}/health")).json()
        first.stop()  # drains and commits what it may
        held = await committed_offset(kafka_bootstrap, group, tp, until=lambda _: True)

        # Restarted where the record can be recorded, the processor gets it again.
        spill_dir = tmp_path / "spill-after-restart"
        start_processor(
            f"{url}/v1",
            DLQ_TOPIC=NO_SUCH_TOPIC,
            PROCESSOR_PUBLISH_DEADLINE_S="10",
            PROCESSOR_SPILL_DIR=str(spill_dir),
            PROCESSOR_MAX_PARTS="1",
        )
        moved = await committed_offset(kafka_bootstrap, group, tp, until=lambda offset: offset == 4)

    assert sorted(r.doc_id for r in results) == sorted(small_ids)
    assert NOWHERE in metrics
    assert "recorded nowhere" in first.logs()
    assert health["status"] == "degraded"
    assert health["details"]["spilled"].startswith("spill file unreadable: ")
    assert held == 1, "never committed past a record that is recorded nowhere"
    assert moved == 4
    spilled = msgspec.json.decode((spill_dir / "spilled.jsonl").read_bytes(), type=SpilledRecord)
    assert (spilled.offset, spilled.key) == (1, b"big-memo")
