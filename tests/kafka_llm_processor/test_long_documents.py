"""A document longer than the model's context is read in parts, on the real embedded model
(a context of 1,024 tokens here, so that the parts are short reads) and a real broker: every
task gets a result made from all of its parts, each stating only what the document holds;
past ``PROCESSOR_MAX_PARTS`` the document goes to the DLQ as ``too_long``, with the server's
refusal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from libs.common.figure_names import named_figures
from libs.common.grounding import Source, quantities_as_written, ungrounded_values
from libs.common.schemas.documents import FinancialDocument, Task
from libs.common.text_parts import halves
from services.kafka_llm_processor.prompts import grounding_text
from services.kafka_llm_processor.settings import ProcessorSettings
from tests.kafka_llm_processor.conftest import Topics, as_messages, collect, send, start_llm
from tests.support.annual_report import annual_report
from tests.support.metrics_text import sample_value

CONTEXT_LENGTH = 1024
PROMPT_ROOM = CONTEXT_LENGTH - ProcessorSettings().max_tokens
"""The most a prompt may take beside the processor's answer (its default ``max_tokens``)."""
SEGMENTS = 8
"""The report's segments: a prompt of about 975 tokens whole, 530 for either half."""


@pytest.fixture(scope="module")
def llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The conftest's LLM, with the smaller context."""
    service = start_llm(tmp_path_factory, context_length=CONTEXT_LENGTH)
    yield f"{service.url}/v1"
    service.stop()


@pytest.mark.timeout(600)
async def test_a_document_longer_than_the_context_is_answered_from_all_its_parts(
    kafka_bootstrap: str, topics: Topics, llm_url: str, start_processor: Any
) -> None:
    processor = start_processor(llm_url)
    tasks: list[Task] = ["summary", "key_figures", "sentiment"]
    docs = [annual_report(f"northwind-{task}", task, segments=SEGMENTS) for task in tasks]
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
        assert result.prompt_tokens > PROMPT_ROOM  # the parts' prompts: more than one could hold
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
    longer = annual_report("northwind-twice", "sentiment", segments=SEGMENTS, copies=2)
    await send(kafka_bootstrap, topics.input, [*as_messages([longer])])

    [letter] = await collect(kafka_bootstrap, topics.dlq, 1, timeout_s=240)

    assert letter.key == "northwind-twice"
    assert letter.error_type == "too_long"
    assert "longer than 2 parts of the model's context hold (PROCESSOR_MAX_PARTS)" in letter.error
    assert "model's context" in letter.error.split("refused:", 1)[1]
    assert msgspec.json.decode(letter.original, type=FinancialDocument) == longer
