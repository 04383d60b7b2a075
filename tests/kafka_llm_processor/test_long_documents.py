"""A document longer than the model's context is read in parts, on the real embedded model
(a context of 2,048 tokens here) and a real broker: every task gets a result made from all of
its parts, each stating only what the document holds; past ``PROCESSOR_MAX_PARTS`` the
document goes to the DLQ as ``too_long``, with the server's refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.figure_names import named_figures
from libs.common.grounding import Source, quantities_as_written, ungrounded_values
from libs.common.schemas.documents import FinancialDocument, Task
from services.kafka_llm_processor.long_documents import halves
from services.kafka_llm_processor.prompts import grounding_text
from tests.kafka_llm_processor.conftest import Topics, as_messages, collect, send
from tests.support.metrics_text import sample_value

SEGMENTS = [
    ("Cloud", 31.2, 12, 41), ("Devices", 18.7, -3, 22), ("Payments", 9.4, 17, 35),
    ("Advertising", 14.1, 6, 29), ("Gaming", 5.3, -8, 18), ("Enterprise", 11.6, 9, 33),
    ("Security", 3.9, 21, 26), ("Search", 22.8, 4, 47), ("Health", 2.2, 31, 12),
    ("Mobility", 7.5, 2, 15), ("Retail", 12.9, -1, 9), ("Media", 4.6, 5, 19),
    ("Logistics", 6.1, 3, 11), ("Energy", 8.3, -5, 24), ("Insurance", 10.2, 7, 31),
    ("Lending", 5.8, 11, 38), ("Travel", 1.9, 26, 8), ("Education", 1.4, 14, 21),
]  # fmt: skip


def annual_report(doc_id: str, task: Task, copies: int = 1) -> FinancialDocument:
    """An annual report of eighteen segments, a paragraph each (about 10,400 characters, near
    2,700 tokens: more than the model's context holds with the answer's 384; half of it fits)."""
    paragraphs = [
        f"{name} segment revenue was ${revenue} billion for the year, "
        f"{'up' if change >= 0 else 'down'} {abs(change)} percent from the prior year. "
        f"Operating margin in {name} was {margin} percent, as the segment shifted its spending "
        "toward products with recurring subscriptions and longer customer contracts. "
        f"Management expects {name} demand to stay steady through the coming fiscal year, with "
        "pricing held and costs watched closely across every region the segment serves. The "
        "segment's order backlog and the renewals of its largest customers were described as "
        "healthy, and its hiring plans were left unchanged for the next two quarters."
        for name, revenue, change, margin in SEGMENTS
    ]
    return FinancialDocument(
        doc_id=doc_id,
        doc_type="sec_filing",
        title="Northwind Holdings annual report (fiscal 2025)",
        content="\n\n".join(paragraphs * copies),
        source="Northwind Holdings 10-K",
        published_at=datetime(2025, 11, 30, tzinfo=UTC),
        task=task,
    )


def test_a_part_ends_at_the_paragraph_nearest_the_middle() -> None:
    content = annual_report("x", "summary").content

    first, second = halves(content) or ("", "")

    assert first + "\n\n" + second == content
    assert first.count("\n\n") == second.count("\n\n") == len(SEGMENTS) // 2 - 1
    assert halves("indivisible") is None


@pytest.mark.timeout(600)
async def test_a_document_longer_than_the_context_is_answered_from_all_its_parts(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    processor = start_processor(llm_url)
    tasks: list[Task] = ["summary", "key_figures", "sentiment"]
    docs = [annual_report(f"northwind-{task}", task) for task in tasks]
    await send(kafka_bootstrap, topics.input, as_messages(docs))

    results = await collect(kafka_bootstrap, topics.output, len(docs), timeout_s=540)
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{processor.url}/metrics")).text

    by_task = {r.task: r for r in results}
    assert sorted(by_task) == ["key_figures", "sentiment", "summary"]
    document = docs[0]
    source = Source.of(grounding_text(document))
    first_half, second_half = halves(document.content) or ("", "")
    for result in results:
        assert result.parts >= 2, result
        assert result.prompt_tokens > 2048  # the parts' prompts together: more than one context
        assert result.status == ("ungrounded" if result.ungrounded else "ok")
    # Key figures from every part, each one the document names (the grammar's choices).
    figures = by_task["key_figures"].key_figures or []
    named = {(f.name, f.value) for f in named_figures(document.content)}
    assert {(f.name, f.value) for f in figures} <= named
    assert any(f.value in second_half and f.value not in first_half for f in figures)
    assert by_task["key_figures"].ungrounded == ungrounded_values(
        [f.value for f in figures], source
    )
    # The summary of the parts' summaries writes only quantities the document writes.
    summary = by_task["summary"].answer
    assert summary
    written = set(quantities_as_written(grounding_text(document)))
    assert set(quantities_as_written(summary)) <= written
    sentiment = by_task["sentiment"].sentiment
    assert sentiment is not None
    assert sentiment.label in {"positive", "neutral", "negative"}
    for task in tasks:
        assert sample_value(metrics, "pas_processor_read_in_parts_total", task=task) == 1.0


@pytest.mark.timeout(300)
async def test_a_document_past_the_parts_allowed_is_dead_lettered_as_too_long(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    start_processor(llm_url, PROCESSOR_MAX_PARTS="2")
    longer = annual_report("northwind-twice", "sentiment", copies=2)
    await send(kafka_bootstrap, topics.input, [*as_messages([longer])])

    [letter] = await collect(kafka_bootstrap, topics.dlq, 1, timeout_s=240)

    assert letter.key == "northwind-twice"
    assert letter.error_type == "too_long"
    assert "longer than 2 parts of the model's context hold (PROCESSOR_MAX_PARTS)" in letter.error
    assert "model's context" in letter.error.split("refused:", 1)[1]
    assert msgspec.json.decode(letter.original, type=FinancialDocument) == longer
