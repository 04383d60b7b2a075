"""Cutting a long text in parts, the refusals that say a prompt is too long, and the label a
text read in parts has."""

from __future__ import annotations

import pytest

from libs.common.text_parts import (
    PartCount,
    TooManyParts,
    halves,
    most_text,
    says_context_overflow,
)
from tests.support.annual_report import SEGMENTS, annual_report_text


def test_a_text_is_cut_at_the_paragraph_nearest_its_middle() -> None:
    content = annual_report_text()

    first, second = halves(content) or ("", "")

    assert first + "\n\n" + second == content
    assert first.count("\n\n") == second.count("\n\n") == len(SEGMENTS) // 2 - 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("First line.\nSecond line is here.", ("First line.", "Second line is here.")),
        ("Revenue rose. Costs fell sharply.", ("Revenue rose.", "Costs fell sharply.")),
        ("just some words", ("just", "some words")),
        ("indivisible", None),
        ("", None),
    ],
)
def test_without_paragraphs_a_line_a_sentence_or_a_word_ends_a_part(
    text: str, expected: tuple[str, str] | None
) -> None:
    assert halves(text) == expected


@pytest.mark.parametrize(
    "refusal",
    [
        # A PAS LLM service (services/llm/backends/embedded.py).
        "the prompt is 2811 tokens; the model's context is 2048 tokens: shorten the messages",
        "the prompt (1700 tokens) plus max_tokens (384) exceed the model's context of 2048",
        # vLLM and OpenAI.
        "This model's maximum context length is 8192 tokens. However, you requested 9000",
        '{"error": {"code": "context_length_exceeded"}}',
        # llama.cpp's server; Anthropic (through the router).
        "the request exceeds the available context size, try increasing it",
        "prompt is too long: 210000 tokens > 200000 maximum",
    ],
)
def test_each_server_s_wording_of_a_prompt_too_long_is_recognised(refusal: str) -> None:
    assert says_context_overflow(refusal)


@pytest.mark.parametrize(
    "refusal",
    ["temperature: must be at most 2", "response_format.json_schema.schema: a JSON schema"],
)
def test_other_refusals_are_not_taken_for_a_prompt_too_long(refusal: str) -> None:
    assert not says_context_overflow(refusal)


def test_the_label_with_the_most_text_wins_a_tie_going_to_the_earlier_part() -> None:
    assert most_text(["positive", "negative", "negative"], [500, 300, 300]) == 1
    assert most_text(["positive", "negative"], [400, 400]) == 0
    assert most_text(["neutral", "negative", "neutral"], [100, 500, 300]) == 1


def test_parts_past_the_most_allowed_or_with_no_place_to_cut_are_refused_saying_why() -> None:
    refusal = ValueError("the prompt is 3000 tokens; the model's context is 2048 tokens")
    counted = PartCount(most=2, setting="PROCESSOR_MAX_PARTS")

    first, second = counted.cut("One paragraph.\n\nAnother paragraph.", refusal)
    with pytest.raises(TooManyParts, match=r"longer than 2 parts .*\(PROCESSOR_MAX_PARTS\)"):
        counted.cut(first + " " + second, refusal)
    with pytest.raises(TooManyParts, match="no place to cut it"):
        PartCount(most=8, setting="X").cut("indivisible", refusal)

    assert (first, second, counted.count) == ("One paragraph.", "Another paragraph.", 2)
