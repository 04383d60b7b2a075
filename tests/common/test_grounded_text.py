"""The free-text schema whose numbers are a document's own (libs/common/grounded_text.py):
what its pattern lets through, read by Python's regular expressions and by hypothesis drawing
texts from it, and that llama.cpp turns it into a grammar it accepts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.grounded_text import grounded_string, max_chars, text_pattern
from libs.common.grounding import quantities_as_written
from services.llm.backends.json_grammar import json_grammar

DOCUMENT = (
    "Apple reported revenue of $383.3 billion in fiscal 2023, down 3 percent, and a gross "
    "margin of 44.1%. Services grew 9% to $85.2 billion; Q4 EPS was $1.46."
)
QUANTITIES = quantities_as_written(DOCUMENT)
SUMMARY = {"max_units": 60, "parts": 3}
# Digits 0-9: other scripts' digits are not excluded by the pattern, and the check after the
# answer judges them.
_NUMBER = re.compile(r"[0-9]+(?:[.,][0-9]+)*")


def numbers(text: str) -> set[str]:
    return set(_NUMBER.findall(text))


@pytest.mark.parametrize(
    "text",
    [
        "Apple's revenue fell 3 percent to $383.3 billion in fiscal 2023.",
        "Services grew 9% to $85.2 billion",
        "Q4 was strong; margins held up.",
        "U.S. sales were year-over-year lower, e.g. in Europe.",
        "$1.46 EPS",
        "No figures at all",
    ],
)
def test_the_documents_numbers_and_any_words_are_let_through(text: str) -> None:
    assert re.fullmatch(text_pattern(QUANTITIES, **SUMMARY), text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("Revenue fell 7 percent", "a number the document does not write"),
        ("Revenue was $383 billion", "a number written otherwise than the document writes it"),
        ("Q4.5 was strong", "two of the document's numbers joined by a point"),
        ("A margin of 444.1%", "two joined with nothing between"),
        ("Revenue -3 percent", "a sign glued to a figure"),
        ("Revenue down - 3 percent", "a sign and a space before a figure"),
        ("Revenue -$383.3 billion", "a sign and a currency before a figure"),
        ('He said "fine"', "a quote would end the JSON string"),
        ("line one\nline two", "a control character"),
        ("", "nothing"),
        ("2023. 2023. 2023. 2023. 2023. 2023.", "more figures than parts: a loop"),
    ],
)
def test_what_is_refused(text: str, why: str) -> None:
    assert not re.fullmatch(text_pattern(QUANTITIES, **SUMMARY), text), why


def test_a_document_without_numbers_allows_none() -> None:
    pattern = text_pattern([], **SUMMARY)

    assert re.fullmatch(pattern, "A quiet quarter.")
    assert not re.fullmatch(pattern, "A quiet quarter of 2023.")


def test_words_alone_are_bounded_by_the_parts() -> None:
    pattern = text_pattern(QUANTITIES, max_units=10, parts=2)

    assert re.fullmatch(pattern, "x" * 20)
    assert not re.fullmatch(pattern, "x" * 21)


def test_a_quantity_is_offered_without_its_sign() -> None:
    """A document's "$1.10-$1.25" is read as "$1.10" and "-$1.25", which is no fall."""
    pattern = text_pattern(quantities_as_written("EPS of $1.10-$1.25"), max_units=20, parts=2)

    assert re.fullmatch(pattern, "EPS of $1.10 to $1.25")
    assert not re.fullmatch(pattern, "EPS of -$1.25")


def test_the_pattern_is_the_same_whatever_the_order_given() -> None:
    assert text_pattern(reversed(QUANTITIES), **SUMMARY) == text_pattern(QUANTITIES, **SUMMARY)


def test_regex_characters_in_a_quantity_are_literal() -> None:
    pattern = text_pattern(["$1.5 (est)"], max_units=10, parts=1)

    assert re.fullmatch(pattern, "$1.5 (est) ok")
    assert not re.fullmatch(pattern, "$1x5 (est) ok")


@settings(max_examples=200, deadline=None)
@given(st.from_regex(text_pattern(QUANTITIES, **SUMMARY), fullmatch=True))
def test_every_number_of_a_text_it_allows_is_one_the_document_writes(text: str) -> None:
    assert numbers(text) <= numbers(" ".join(QUANTITIES))
    assert len(text) <= max_chars(**SUMMARY, longest=max(map(len, QUANTITIES)))


def test_the_schema_states_the_longest_text_it_allows() -> None:
    schema = grounded_string(QUANTITIES, **SUMMARY)

    assert schema["type"] == "string"
    assert schema["pattern"] == text_pattern(QUANTITIES, **SUMMARY)
    longest = max(map(len, QUANTITIES))
    assert schema["maxLength"] == 3 * 60 * 2 + 4 * longest + 1


def test_llama_cpp_python_makes_a_grammar_of_it() -> None:
    """The embedded backend's converter (llama-cpp-python's) reads the pattern, quantities as
    literals; that llama.cpp then decodes under it is tested through the runner on the real
    model (tests/langgraph_runner/test_workflows.py)."""
    schema = {
        "type": "object",
        "properties": {"summary": grounded_string(QUANTITIES, **SUMMARY)},
        "required": ["summary"],
    }
    rules = json_grammar(schema)

    # "$383.3 billion" and the others, as literals.
    assert "[$]" in rules
    assert "[.]" in rules
    assert re.search(r"^summary ::= ", rules, re.MULTILINE)
