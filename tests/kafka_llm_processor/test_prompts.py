"""The schema an answer is held to: each key-figure value one of the quantities the document
writes, as it writes them, and a summary and a sentiment's reason writing numbers only so."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from libs.common.grounded_text import text_pattern
from libs.common.grounding import quantities_as_written
from libs.common.schemas.documents import FinancialDocument, KeyFigure, Task
from services.kafka_llm_processor.prompts import (
    CHAIN_STEP_TOKENS,
    CHAIN_TOKENS,
    REASON,
    SCHEMAS,
    SHORT_TEXT,
    SUMMARY,
    AnswerUnusable,
    KeyFiguresAnswer,
    SentimentAnswer,
    answer_schema,
    grounding_text,
    structured,
    summary_text,
)
from services.kafka_llm_processor.settings import ProcessorSettings
from services.llm.backends.json_grammar import json_grammar

DOCUMENT = FinancialDocument(
    doc_id="northwind-q3",
    doc_type="earnings_report",
    title="Northwind Q3",
    content="Revenue rose 12.4% to $89.5 billion; the margin fell 1 percent. Revenue: "
    "$89.5 billion.",
    source="Northwind IR",
    published_at=datetime(2026, 10, 30, tzinfo=UTC),
    task="key_figures",
)


def test_quantities_are_given_as_the_text_writes_them_each_once() -> None:
    assert quantities_as_written(DOCUMENT.content) == ["12.4%", "$89.5 billion", "1 percent"]


def _choice(schema: dict[str, Any], ref: dict[str, str]) -> tuple[str, str, list[str]]:
    figure = schema["$defs"][ref["$ref"].removeprefix("#/$defs/")]
    properties = figure["properties"]
    [name], [value] = properties["name"]["enum"], properties["value"]["enum"]
    later = [r["$ref"] for r in properties.get("next", {}).get("anyOf", [])]
    return name, value, later


def test_key_figures_are_a_chain_through_the_pairs_the_document_names() -> None:
    schema = answer_schema(DOCUMENT)
    # The chain starts at the document's first figure.
    assert schema["properties"]["key_figures"] == {"$ref": "#/$defs/figure0"}
    choices = [_choice(schema, {"$ref": f"#/$defs/{name}"}) for name in schema["$defs"]]
    # The content's figures with their names, each pair once, in the document's order; none
    # from the title or the date line. Each may be followed only by one named later.
    assert [(name, value) for name, value, _ in choices] == [
        ("Revenue change", "rose 12.4%"),
        ("Revenue", "$89.5 billion"),
        ("margin change", "fell 1 percent"),
    ]
    assert [later for _, _, later in choices] == [
        ["#/$defs/figure1", "#/$defs/figure2"],
        ["#/$defs/figure2"],
        [],
    ]
    assert schema["required"] == SCHEMAS["key_figures"]["required"]
    # llama.cpp reads it (the embedded model's grammar), and an answer in it is read in order.
    assert "figure2" in json_grammar(schema)
    answer = (
        '{"key_figures": {"name": "Revenue change", "value": "rose 12.4%", '
        '"next": {"name": "margin change", "value": "fell 1 percent"}}}'
    )
    assert structured("key_figures", answer)[0] == [
        KeyFigure(name="Revenue change", value="rose 12.4%"),
        KeyFigure(name="margin change", value="fell 1 percent"),
    ]
    # A server that ignores the schema and answers with a list is read as before.
    listed = '{"key_figures": [{"name": "Revenue", "value": "$89.5 billion"}]}'
    assert structured("key_figures", listed)[0] == [
        KeyFigure(name="Revenue", value="$89.5 billion")
    ]


def test_a_chain_closes_within_the_processor_s_token_budget() -> None:
    """A filing with far more named figures than an answer can hold offers its first ones,
    as many as a chain through all of them fits in ``CHAIN_TOKENS`` at two characters a
    token."""
    content = " ".join(f"Segment {i} revenue was ${i}.5 billion." for i in range(1, 60))
    schema = answer_schema(msgspec.structs.replace(DOCUMENT, content=content))
    offered = [_choice(schema, {"$ref": f"#/$defs/{name}"}) for name in schema["$defs"]]
    assert 5 <= len(offered) < 59
    assert offered[0][:2] == ("Segment 1 revenue", "$1.5 billion")
    longest = sum((len(n) + len(v)) // 2 + CHAIN_STEP_TOKENS for n, v, _ in offered)
    assert longest <= CHAIN_TOKENS < ProcessorSettings().max_tokens


def test_without_named_figures_a_value_may_only_be_a_quantity_the_document_writes() -> None:
    # Quantities in a list name nothing: the model names them, and copies their values.
    listed = msgspec.structs.replace(DOCUMENT, content="Figures: 12.4%, $89.5 billion, 1 percent.")
    items = answer_schema(listed)["properties"]["key_figures"]["items"]
    assert items["properties"]["value"]["enum"] == ["12.4%", "$89.5 billion", "1 percent"]
    assert items["properties"]["name"] == {"type": "string", "maxLength": SHORT_TEXT}
    # No bare year, and nothing from the title or the date line.
    fiscal = msgspec.structs.replace(DOCUMENT, content="In fiscal 2023: 12.4%.")
    fiscal_items = answer_schema(fiscal)["properties"]["key_figures"]["items"]
    assert fiscal_items["properties"]["value"]["enum"] == ["12.4%"]
    assert "2026" in quantities_as_written(grounding_text(DOCUMENT))  # shown, but no figure
    answer = b'{"key_figures": [{"name": "revenue", "value": "$89.5 billion"}]}'
    decoded = msgspec.json.decode(answer, type=KeyFiguresAnswer).key_figures[0]
    assert decoded.value in items["properties"]["value"]["enum"]


CONTENT = ["12.4%", "$89.5 billion", "1 percent"]


@pytest.mark.parametrize(
    ("task", "field", "bounds", "quantities"),
    [
        # A summary may copy the title's ("Northwind Q3"), years included.
        ("summary", "summary", SUMMARY, ["3", *CONTENT]),
        # A reason the content's only (a small model gave the date line as a reason).
        ("sentiment", "reason", REASON, CONTENT),
    ],
)
def test_a_text_writes_numbers_only_as_the_document_does(
    task: Task, field: str, bounds: dict[str, int], quantities: list[str]
) -> None:
    schema = answer_schema(msgspec.structs.replace(DOCUMENT, task=task))
    text = schema["properties"][field]
    assert text["pattern"] == text_pattern(quantities, **bounds)
    assert re.fullmatch(text["pattern"], "Northwind's revenue rose 12.4% to $89.5 billion.")
    assert not re.fullmatch(text["pattern"], "Revenue rose 12% to $89.5 billion.")
    assert not re.fullmatch(text["pattern"], "2026-10-30")
    assert field in schema["required"]


def test_a_summary_is_read_from_its_json_or_from_prose() -> None:
    assert summary_text('{"summary": "Revenue rose 12.4%."}') == "Revenue rose 12.4%."
    # A server that ignores the schema answers in prose: that is the summary.
    assert summary_text("Revenue rose 12.4%.") == "Revenue rose 12.4%."
    with pytest.raises(AnswerUnusable, match="not the asked JSON"):
        summary_text('{"summary": "Revenue rose 12.4% and the')
    # No summary at all (a reasoning model out of budget, a content filter): not an answer.
    for empty in ("", "  \n", '{"summary": " "}'):
        with pytest.raises(AnswerUnusable, match="no summary"):
            summary_text(empty)


def test_an_answer_nested_too_deep_to_read_is_unusable() -> None:
    """A thousand levels raise RecursionError in msgspec: it escaped as a failure of the
    record's handling (its partition stalled) rather than an unusable answer."""
    link = '{"name": "revenue", "value": "$89.5 billion", "next": '
    chain = '{"key_figures": ' + link * 1000 + "null" + "}" * 1000 + "}"
    deep = "[" * 1000 + "]" * 1000
    answers: list[tuple[Task, str]] = [
        ("key_figures", chain),
        ("key_figures", '{"key_figures": [], "more": ' + deep + "}"),
        ("sentiment", '{"label": "positive", "reason": "r", "more": ' + deep + "}"),
    ]
    for task, answer in answers:
        with pytest.raises(AnswerUnusable, match="nested too deep to read"):
            structured(task, answer)
    with pytest.raises(AnswerUnusable, match="nested too deep to read"):
        summary_text('{"summary": "Revenue rose 12.4%.", "more": ' + deep + "}")


def test_a_sentiment_keeps_its_label_and_reads_as_before() -> None:
    schema = answer_schema(msgspec.structs.replace(DOCUMENT, task="sentiment"))
    # The label and the rest are the static schema's; an answer in it is one the processor reads.
    static = SCHEMAS["sentiment"]
    assert schema["properties"]["label"] == static["properties"]["label"]
    assert schema["required"] == static["required"]
    answer = b'{"label": "positive", "reason": "Revenue rose 12.4% to $89.5 billion."}'
    assert msgspec.json.decode(answer, type=SentimentAnswer).label == "positive"
