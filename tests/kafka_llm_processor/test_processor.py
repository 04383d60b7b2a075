"""The processor on a real broker with the real embedded model: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest
from aiokafka import TopicPartition

from libs.common.figure_names import named_figures
from libs.common.grounding import (
    Source,
    misattributed,
    reason_grounded,
    ungrounded_values,
)
from libs.common.schemas.documents import DocumentResult, FinancialDocument, Task
from services.kafka_llm_processor.prompts import INSTRUCTIONS, grounding_text
from services.kafka_llm_processor.send_samples import documents
from tests.kafka_llm_processor.conftest import (
    Topics,
    as_messages,
    collect,
    send,
)
from tests.support.asgi_server import serve_asgi
from tests.support.group_offsets import committed_offset
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder
from tests.support.polling import poll_async
from tests.support.processes import free_port

# The tests on the real model wait for its answers (a few seconds each on two busy cores), so
# they get more time than the suite's default; the fake-backend tests keep the default.
MODEL_BOUND = pytest.mark.timeout(420)


def sentiment_documents(count: int) -> list[FinancialDocument]:
    """Documents whose answers are short (a label and a reason of at most 120 characters):
    the crash and shutdown tests need many answers, not long ones."""
    return [msgspec.structs.replace(d, task="sentiment") for d in documents(count)]


@MODEL_BOUND
async def test_every_document_gets_a_result(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    processor = start_processor(llm_url)
    docs = documents(7)
    await send(kafka_bootstrap, topics.input, as_messages(docs))

    results = await collect(kafka_bootstrap, topics.output, len(docs), timeout_s=360)
    letters = await collect(kafka_bootstrap, topics.dlq, 0, timeout_s=1)

    assert sorted(r.doc_id for r in results) == sorted(d.doc_id for d in docs)
    assert letters == []
    by_id = {r.doc_id: r for r in results}
    for doc in docs:
        result = by_id[doc.doc_id]
        assert result.task == doc.task
        assert result.prompt_tokens > 0
        assert result.completion_tokens > 0
        assert result.source_offset.startswith(f"{topics.input}/")
        source = Source.of(grounding_text(doc))  # all the model was shown of it
        # One question, or two when the first answer stated what the document does not hold.
        assert result.attempts in (1, 2)
        if doc.task == "key_figures":
            assert result.key_figures is not None
            values = [f.value for f in result.key_figures]
            assert result.ungrounded == ungrounded_values(values, source)
            # The model's grammar lets it choose only among the figures the document names,
            # each name with its own value, each once and in the document's order, from its
            # first (its headline).
            named = [(f.name, f.value) for f in named_figures(doc.content)]
            chosen = [(f.name, f.value) for f in result.key_figures]
            assert chosen[0] == named[0]
            assert set(chosen) <= set(named)
            assert [named.index(pair) for pair in chosen] == sorted(
                {named.index(pair) for pair in chosen}
            )
            assert (result.ungrounded, result.attempts) == ([], 1)
        if doc.task == "sentiment":
            assert result.sentiment is not None
            assert result.sentiment.label in {"positive", "neutral", "negative"}
            grounded = reason_grounded(result.sentiment.reason, source)
            assert result.ungrounded == ([] if grounded else [f"reason: {result.sentiment.reason}"])
        if doc.task == "summary":
            # Its numbers are the document's by its schema; what it says each is of is judged.
            assert result.ungrounded == misattributed(result.answer, source)
        assert result.status == ("ungrounded" if result.ungrounded else "ok")
        if result.ungrounded:
            assert result.attempts == 2
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{processor.url}/metrics")).text
        health = (await http.get(f"{processor.url}/health")).json()
    assert "pas_processor_documents_processed_total" in metrics
    for task in ("key_figures", "sentiment"):
        ungrounded = sum(1 for r in results if r.task == task and r.status == "ungrounded")
        counted = f'pas_processor_ungrounded_total{{task="{task}"}} {float(ungrounded)}'
        assert counted in metrics or (
            ungrounded == 0 and counted.split(maxsplit=1)[0] not in metrics
        )
    # The only consumer in its group owns every partition of the input topic.
    assert health["details"]["partitions"] == [0, 1, 2]


async def test_poison_messages_go_to_the_dlq_and_processing_goes_on(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    start_processor(llm_url, PROCESSOR_MAX_MESSAGE_BYTES="4096")
    good = documents(1)
    poison = [
        (b"not-json", b"{this is not json"),
        (b"wrong-schema", b'{"doc_id": "x", "title": 42}'),
        (b"too-large", b'{"doc_id": "big", "content": "' + b"x" * 5000 + b'"}'),
    ]
    await send(kafka_bootstrap, topics.input, [*poison, *as_messages(good)])

    letters = await collect(kafka_bootstrap, topics.dlq, 3)
    results = await collect(kafka_bootstrap, topics.output, 1)

    by_key = {letter.key: letter for letter in letters}
    assert by_key["not-json"].error_type == "invalid_document"
    assert by_key["not-json"].original == "{this is not json"
    assert by_key["wrong-schema"].error_type == "invalid_document"
    assert "title" in by_key["wrong-schema"].error
    assert by_key["too-large"].error_type == "too_large"
    assert [r.doc_id for r in results] == [good[0].doc_id]


async def test_calls_in_flight_reach_the_concurrency_bound_and_never_pass_it(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """The LLM is a fake OpenAI-compatible server (its documented chat wire format) that
    answers after 200 ms and counts the calls it holds at once, as a batching backend would."""
    backend = OpenAIResponder(delay_s=0.2)
    docs = [msgspec.structs.replace(d, task="summary") for d in documents(24)]
    with serve_asgi(backend) as url:
        processor = start_processor(f"{url}/v1", PROCESSOR_CONCURRENCY="4")
        async with httpx.AsyncClient(base_url=processor.url) as http:
            out = asyncio.Event()
            watching = asyncio.create_task(_in_flight_readings(http, out))
            await send(kafka_bootstrap, topics.input, as_messages(docs))
            results = await collect(kafka_bootstrap, topics.output, len(docs))
            out.set()
            readings = await watching
            readings.append(await _in_flight(http))

    assert sorted(r.doc_id for r in results) == sorted(d.doc_id for d in docs)
    assert len(backend.requests) == len(docs)
    assert backend.most_in_flight == 4
    # The gauge says what the backend saw: the slots held, four at most, none once all is out.
    assert max(readings) == 4
    assert readings[-1] == 0
    # Every call names the run analytics counts it toward: the document at its offset.
    assert {(h["x-pas-workflow-id"], h["x-pas-workflow-run-id"]) for h in backend.headers} == {
        ("kafka_llm_processor.summary", f"{r.doc_id}@{r.source_offset}") for r in results
    }


async def _in_flight(http: httpx.AsyncClient) -> float:
    return sample_value((await http.get("/metrics")).text, "pas_processor_in_flight")


async def _in_flight_readings(http: httpx.AsyncClient, done: asyncio.Event) -> list[float]:
    """``pas_processor_in_flight`` every 20 ms until ``done``."""
    readings: list[float] = []
    while not done.is_set():
        readings.append(await _in_flight(http))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.02)
    return readings


@pytest.mark.parametrize("codec", ["snappy", "lz4", "zstd"])
async def test_documents_compressed_with_any_kafka_codec_are_answered(
    kafka_bootstrap: str, topics: Topics, start_processor: Any, codec: str
) -> None:
    """A producer upstream may compress with any codec Kafka has, not only the gzip PAS
    writes: batches of each are read and every document is answered, none dead-lettered; a
    processor writing its results with that codec (PROCESSOR_COMPRESSION) has them read. (The
    LLM is the fake OpenAI-compatible server, its documented chat wire format.)"""
    docs = [
        msgspec.structs.replace(d, doc_id=f"{codec}-{d.doc_id}", task="summary")
        for d in documents(6)
    ]
    with serve_asgi(OpenAIResponder()) as url:
        start_processor(f"{url}/v1", PROCESSOR_COMPRESSION=codec)
        await send(kafka_bootstrap, topics.input, as_messages(docs), compression=codec)
        results = await collect(kafka_bootstrap, topics.output, len(docs))

    assert sorted(r.doc_id for r in results) == sorted(d.doc_id for d in docs)
    assert {r.status for r in results} == {"ok"}


async def answered_by(
    scripted: Callable[[dict[str, Any]], str],
    docs: list[FinancialDocument],
    kafka_bootstrap: str,
    topics: Topics,
    start_processor: Any,
) -> tuple[dict[str, DocumentResult], str]:
    """Each document's result, by ``doc_id``, from a processor asking the ``scripted`` model;
    and the processor's metrics once they are all out."""
    with serve_asgi(OpenAIResponder(answer_for=scripted)) as url:
        processor = start_processor(f"{url}/v1")
        await send(kafka_bootstrap, topics.input, as_messages(docs))
        results = {r.doc_id: r for r in await collect(kafka_bootstrap, topics.output, len(docs))}
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"{processor.url}/metrics")).text
    return results, metrics


def northwind_q3(doc_id: str, content: str, task: Task) -> FinancialDocument:
    """A short filing whose title names ``doc_id``, which a scripted model reads to know which
    answer to give."""
    return FinancialDocument(
        doc_id=doc_id,
        doc_type="earnings_report",
        title=f"Northwind Q3 ({doc_id})",
        content=content,
        source="Northwind IR",
        published_at=datetime(2026, 10, 30, tzinfo=UTC),
        task=task,
    )


async def test_an_empty_summary_is_a_dead_letter_not_an_ok_result(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A model answering nothing (vLLM's reasoning parser gives ``content: null`` when the
    budget runs out while the model thinks; the fake OpenAI-compatible server answers "",
    its documented chat wire format) was published as ``status: ok`` with an empty answer."""
    docs = [northwind_q3("silent", "Revenue rose 12.4% to $89.5 billion.", "summary")]
    with serve_asgi(OpenAIResponder(answer_for=lambda _: "")) as url:
        start_processor(f"{url}/v1")
        await send(kafka_bootstrap, topics.input, as_messages(docs))
        [letter] = await collect(kafka_bootstrap, topics.dlq, 1)
        published = await collect(kafka_bootstrap, topics.output, 1, timeout_s=1)

    assert letter.error_type == "AnswerUnusable"
    assert "no summary" in letter.error
    assert published == []


async def test_key_figures_nested_too_deep_to_read_are_a_dead_letter_and_the_partition_goes_on(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A scripted model (a fake OpenAI-compatible server, its documented chat wire format)
    answers one document with a chain of key figures a thousand levels deep: reading it raised
    RecursionError past the processor's handling of unusable answers, and the partition
    stalled behind the record."""
    content = "Revenue rose 12.4% to $89.5 billion."
    docs = [northwind_q3(doc_id, content, "key_figures") for doc_id in ("deep", "after")]
    link = '{"name": "revenue", "value": "$89.5 billion", "next": '

    def scripted(request: dict[str, Any]) -> str:
        if "(deep)" in request["messages"][1]["content"]:
            return '{"key_figures": ' + link * 1000 + "null" + "}" * 1000 + "}"
        return json.dumps({"key_figures": [{"name": "revenue", "value": "$89.5 billion"}]})

    with serve_asgi(OpenAIResponder(answer_for=scripted)) as url:
        start_processor(f"{url}/v1")
        await send(kafka_bootstrap, topics.input, as_messages(docs), partition=0)
        [letter] = await collect(kafka_bootstrap, topics.dlq, 1, timeout_s=60)
        [result] = await collect(kafka_bootstrap, topics.output, 1, timeout_s=60)
        committed = await committed_offset(
            kafka_bootstrap,
            f"group-{topics.input}",
            TopicPartition(topics.input, 0),
            until=lambda offset: offset == len(docs),
        )

    assert (letter.key, letter.error_type) == ("deep", "AnswerUnusable")
    assert "nested too deep to read" in letter.error
    assert (result.doc_id, result.status) == ("after", "ok")
    assert committed == len(docs)


async def test_an_invented_figure_is_asked_again_and_never_published_as_ok(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A scripted model (a fake OpenAI-compatible server, its documented chat wire format):
    it invents a figure unless asked strictly, for one document, and always, for another;
    a third gets a sentiment whose reason cites nothing in the document. A figure the model
    lists twice is published once."""
    content = "Revenue rose 12.4% to $89.5 billion; the margin fell 1 percent."
    docs = [northwind_q3(doc_id, content, "key_figures") for doc_id in ("mends", "invents")]
    docs.append(northwind_q3("vague", content, "sentiment"))

    def scripted(request: dict[str, Any]) -> str:
        system, user = (m["content"] for m in request["messages"])
        if system.startswith(INSTRUCTIONS["sentiment"]):
            return '{"label": "positive", "reason": "Investors will like this document."}'
        strict = system != INSTRUCTIONS["key_figures"]
        revenue = "$89.5 billion" if strict and "(mends)" in user else "$91 billion"
        figures = [{"name": "revenue", "value": revenue}, {"name": "margin", "value": "-1%"}]
        figures.append({"name": " revenue", "value": revenue})  # said twice: listed once
        return json.dumps({"key_figures": figures})

    results, metrics = await answered_by(scripted, docs, kafka_bootstrap, topics, start_processor)

    assert (results["mends"].status, results["mends"].attempts) == ("ok", 2)
    assert [f.value for f in results["mends"].key_figures or []] == ["$89.5 billion", "-1%"]
    assert results["invents"].status == "ungrounded"
    assert results["invents"].ungrounded == ["$91 billion"]
    assert results["vague"].status == "ungrounded"
    assert results["vague"].ungrounded == ["reason: Investors will like this document."]
    assert 'pas_processor_ungrounded_total{task="key_figures"} 1.0' in metrics
    assert 'pas_processor_grounding_retries_total{task="key_figures"} 2.0' in metrics


async def test_a_summary_number_said_of_another_metric_is_asked_again_told_what_was_wrong(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A scripted model (a fake OpenAI-compatible server, its documented chat wire format)
    gives the margin's fall to revenue: for one document until told so, for another always."""
    content = "Revenue rose 12.4% to $89.5 billion; the operating margin fell 1 percent."
    docs = [northwind_q3(doc_id, content, "summary") for doc_id in ("mends", "persists")]
    wrong = "1 percent said of revenue; the document's is of operating margin"

    def scripted(request: dict[str, Any]) -> str:
        system, user = (m["content"] for m in request["messages"])
        told = system.endswith(f"got these wrong: {wrong}.")
        summary = (
            "Revenue rose 12.4% to $89.5 billion, and the operating margin fell 1 percent."
            if told and "(mends)" in user
            else "Northwind's revenue fell 1 percent."
        )
        return json.dumps({"summary": summary})

    results, metrics = await answered_by(scripted, docs, kafka_bootstrap, topics, start_processor)

    assert (results["mends"].status, results["mends"].attempts) == ("ok", 2)
    assert results["mends"].answer.startswith("Revenue rose 12.4%")
    assert (results["persists"].status, results["persists"].attempts) == ("ungrounded", 2)
    assert results["persists"].ungrounded == [wrong]
    assert 'pas_processor_ungrounded_total{task="summary"} 1.0' in metrics
    assert 'pas_processor_grounding_retries_total{task="summary"} 2.0' in metrics


async def test_a_summary_ending_in_a_loop_is_published_with_the_loop_said_once(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """A scripted model (a fake OpenAI-compatible server, its documented chat wire format)
    ends one summary by saying its last sentence until the token limit, and answers others
    plainly, in prose and in the asked JSON: the first is published with the sentence once and
    counted, the others as written (a JSON answer's summary), and the tokens count what the
    model wrote."""
    opening = "Northwind's revenue rose 12.4% to $89.5 billion."
    looped = "The margin fell 1 percent."
    answers = {
        "loops": " ".join([opening, *[looped] * 30, "The margin fe"]),
        "plain": f"{opening} {looped}",
        "json": msgspec.json.encode({"summary": f"{opening} {looped}"}).decode(),
    }
    docs = [
        msgspec.structs.replace(doc, doc_id=doc_id, title=f"Northwind ({doc_id})", task="summary")
        for doc, doc_id in zip(documents(3), answers, strict=True)
    ]

    def scripted(request: dict[str, Any]) -> str:
        user = request["messages"][-1]["content"]
        return next(answers[name] for name in answers if f"({name})" in user)

    results, metrics = await answered_by(scripted, docs, kafka_bootstrap, topics, start_processor)

    assert results["loops"].answer == f"{opening} {looped}"
    assert results["plain"].answer == answers["plain"]
    assert results["json"].answer == answers["plain"]
    assert results["loops"].completion_tokens == results["plain"].completion_tokens > 0
    assert 'pas_processor_loops_cut_total{task="summary"} 1.0' in metrics


async def test_a_processor_joining_mid_stream_takes_partitions_and_nothing_is_answered_twice(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    """The first processor settles its partitions before they move (lets the documents in hand
    be recorded, commits them), so the second starts after them: one result per document."""
    # Slow (0.5 s a call, two slots: 50 s for the first alone) until the second has joined,
    # then fast: however long the join takes, the first is still at work meanwhile.
    backend = OpenAIResponder(delay_s=0.5)
    docs = [msgspec.structs.replace(d, task="summary") for d in documents(200)]
    wanted = {d.doc_id for d in docs}
    with serve_asgi(backend) as url:
        start_processor(f"{url}/v1", PROCESSOR_CONCURRENCY="2")
        await send(kafka_bootstrap, topics.input, as_messages(docs))
        await collect(kafka_bootstrap, topics.output, 4)
        second = start_processor(f"{url}/v1", PROCESSOR_CONCURRENCY="2")
        second_partitions = await partitions_of(second.url)
        backend.delay_s = 0.05
        results = await collect(
            kafka_bootstrap,
            topics.output,
            0,
            timeout_s=180,
            until=lambda found: {r.doc_id for r in found} >= wanted,
        )
        await asyncio.sleep(2)  # anything answered twice would be out by now
        everything = await collect(kafka_bootstrap, topics.output, len(docs) + 1, timeout_s=5)

    assert {r.doc_id for r in results} == wanted
    assert len(everything) == len(docs), "no document answered twice"
    assert second_partitions, "the second took partitions"


async def partitions_of(url: str, timeout_s: float = 120) -> list[int]:
    """The partitions a processor owns, once it owns some (or at the timeout)."""
    async with httpx.AsyncClient() as http:

        async def partitions() -> list[int]:
            owned: list[int] = (await http.get(f"{url}/health")).json()["details"]["partitions"]
            return owned

        return await poll_async(partitions, timeout_s=timeout_s, interval_s=0.2)


async def test_llm_down_means_retries_then_the_dlq(
    kafka_bootstrap: str, topics: Topics, start_processor: Any
) -> None:
    start_processor(
        f"http://127.0.0.1:{free_port()}/v1",
        PROCESSOR_MAX_ATTEMPTS="3",
        PROCESSOR_RETRY_BACKOFF_S="0.05",
    )
    docs = documents(2)
    await send(kafka_bootstrap, topics.input, as_messages(docs))

    letters = await collect(kafka_bootstrap, topics.dlq, 2)

    assert sorted(letter.key for letter in letters) == sorted(d.doc_id for d in docs)
    assert all(letter.attempts == 3 for letter in letters)
    assert all(letter.error_type == "TransientLLMError" for letter in letters)
    assert all("ClientConnectorError" in letter.error for letter in letters)


@MODEL_BOUND
async def test_killed_mid_stream_then_restarted_answers_every_document(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    docs = sentiment_documents(6)
    await send(kafka_bootstrap, topics.input, as_messages(docs))
    first = start_processor(llm_url, PROCESSOR_CONCURRENCY="2")
    await collect(kafka_bootstrap, topics.output, 2, timeout_s=180)
    first.kill()

    start_processor(llm_url, PROCESSOR_CONCURRENCY="4")
    wanted = {d.doc_id for d in docs}
    results = await collect(
        kafka_bootstrap,
        topics.output,
        0,
        timeout_s=220,
        until=lambda found: {r.doc_id for r in found} >= wanted,
    )

    assert {r.doc_id for r in results} == {d.doc_id for d in docs}
    # Duplicates are allowed after a crash, and identifiable by key and source offset.
    assert len({(r.doc_id, r.source_offset) for r in results}) == len(docs)


@MODEL_BOUND
async def test_sigterm_finishes_in_flight_work_and_commits_it(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    docs = sentiment_documents(4)
    await send(kafka_bootstrap, topics.input, as_messages(docs))
    first = start_processor(llm_url, PROCESSOR_CONCURRENCY="4")
    await collect(kafka_bootstrap, topics.output, 1, timeout_s=180)
    first.stop(timeout_s=180)  # SIGTERM while the others are in flight; it may drain a while
    answered = await collect(kafka_bootstrap, topics.output, len(docs), timeout_s=10)

    second = start_processor(llm_url)
    await asyncio.sleep(3)  # time for the second processor to redo anything left uncommitted
    everything = await collect(kafka_bootstrap, topics.output, len(docs) + 1, timeout_s=5)
    second.stop()

    assert {r.doc_id for r in answered} == {d.doc_id for d in docs}
    assert len(everything) == len(docs), "a drained processor leaves nothing to redo"
    assert "draining" in first.logs()
