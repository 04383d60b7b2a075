"""Replicas of the processor share one consumer group: 5,000 documents through three of them,
one SIGKILLed mid-run and a fourth added, and every document is answered; what the killed one
had in hand is answered again by its partitions' next owner, and such a duplicate says so (the
same ``doc_id`` and ``source_offset`` as the first answer).

The LLM is a fake OpenAI-compatible server (its documented chat wire format) taking 200 ms a
call, calls overlapping, as a batching backend (vLLM, llama.cpp's server) does."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.kafka.topics import ensure_topics
from libs.common.schemas.documents import DocumentResult, FinancialDocument
from services.kafka_llm_processor.send_samples import documents
from tests.kafka_llm_processor.conftest import Topics, as_messages, collect, send
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.topic_reader import read_until_quiet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DOCUMENTS = 5_000
PARTITIONS = 6


def many_documents(count: int) -> list[FinancialDocument]:
    """``count`` documents of distinct ids (the samples, renamed), all asking for a summary."""
    samples = documents(7)
    return [
        msgspec.structs.replace(samples[i % 7], doc_id=f"scale-{i:05d}", task="summary")
        for i in range(count)
    ]


async def test_replicas_share_the_work_and_a_killed_one_loses_nothing(
    kafka_bootstrap: str, start_processor: Any
) -> None:
    run = uuid.uuid4().hex[:8]
    topics = Topics(input=f"docs-{run}", output=f"results-{run}", dlq=f"dlq-{run}")
    await ensure_topics(
        kafka_bootstrap, {topics.input: PARTITIONS, topics.output: PARTITIONS, topics.dlq: 1}
    )
    docs = many_documents(DOCUMENTS)
    wanted = {d.doc_id for d in docs}
    backend = OpenAIResponder(delay_s=0.2)
    with serve_asgi(backend) as url:
        env = {
            "INPUT_TOPIC": topics.input,
            "OUTPUT_TOPIC": topics.output,
            "DLQ_TOPIC": topics.dlq,
            "PROCESSOR_GROUP_ID": f"group-{run}",
            "PROCESSOR_CONCURRENCY": "32",
        }
        replicas = [start_processor(f"{url}/v1", **env) for _ in range(3)]
        await send(kafka_bootstrap, topics.input, as_messages(docs))
        # A third of the way through, one replica dies without a word and another comes.
        await collect(kafka_bootstrap, topics.output, DOCUMENTS // 3, timeout_s=300)
        replicas[0].kill()
        replicas.append(start_processor(f"{url}/v1", **env))

        def all_answered(found: list[DocumentResult]) -> bool:
            return len(found) >= DOCUMENTS and wanted <= {r.doc_id for r in found}

        await collect(kafka_bootstrap, topics.output, 0, timeout_s=400, until=all_answered)
        async with httpx.AsyncClient() as http:
            processed = [
                _processed((await http.get(f"{replica.url}/metrics")).text)
                for replica in replicas[1:]
            ]
        # The live replicas may still be answering duplicates: let them drain (SIGTERM
        # publishes what is in hand) and let the killed one's last calls end, so that every
        # request the backend saw either has its answer on the topic or died with the replica.
        for replica in replicas[1:]:
            replica.stop(timeout_s=60)
        results = [
            msgspec.json.decode(r.value or b"", type=DocumentResult)
            for r in await read_until_quiet(kafka_bootstrap, topics.output, quiet_ms=3000)
        ]
        letters = await collect(kafka_bootstrap, topics.dlq, 0, timeout_s=1)

    answered = {r.doc_id for r in results}
    assert answered == wanted, f"{len(wanted - answered)} documents never answered"
    assert letters == []
    # Duplicates are answers to the same record: same document, same source offset.
    by_record = Counter((r.doc_id, r.source_offset) for r in results)
    assert len(by_record) == DOCUMENTS, "a document was answered from two different records"
    duplicates = len(results) - DOCUMENTS
    # At most what the killed replica had in hand and not committed: its slots, its
    # unacknowledged results and a commit interval's worth, on its partitions.
    assert duplicates <= 32 + 256 + 1_000, duplicates
    # Every live replica took its share of the partitions, the one added mid-run too.
    assert all(count > 0 for count in processed), processed
    # Besides, only the killed replica's work went unanswered: the calls it had in flight and
    # the answers it had handed to its producer but not seen acknowledged.
    assert backend.in_flight == 0
    assert len(results) <= len(backend.requests) <= len(results) + 32 + 256


def _processed(metrics: str) -> float:
    found = re.search(
        r'^pas_processor_documents_processed_total\{task="summary"\} (\S+)$', metrics, re.M
    )
    return float(found[1]) if found else 0.0
