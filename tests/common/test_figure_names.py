"""A document's figures as it names them: each quantity with the words that name it."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

import libs.common.figure_names as names
from libs.common.figure_names import NAME_CHARS, NamedFigure, named_figures
from libs.common.grounding import Source, quantity_matches, value_grounded
from libs.evaluation.eval_set import load
from libs.evaluation.scoring import values_match

EVAL_SET = Path("libs/evaluation/data/documents.jsonl")

APPLE = (
    "Apple today announced financial results for its fiscal 2023 fourth quarter ended "
    "September 30, 2023. The Company posted quarterly revenue of $89.5 billion, down 1 percent "
    "year over year, and quarterly diluted earnings per share of $1.46, up 13 percent year over "
    "year. iPhone revenue was $43.8 billion. The board of directors declared a cash dividend of "
    "$0.24 per share of the Company's common stock."
)


def stems(name: str) -> set[str]:
    """A name's words by their first five letters (so *deliveries* is *delivered*)."""
    return {w[:5] for w in re.findall(r"[a-z]+", name.lower()) if len(w) > 2}


def pairs(text: str) -> list[tuple[str, str]]:
    return [(f.name, f.value) for f in named_figures(text)]


def test_a_filing_s_figures_are_named_as_it_names_them() -> None:
    # No year, no day of the month: numbers that measure nothing are no figures.
    assert pairs(APPLE) == [
        ("quarterly revenue", "$89.5 billion"),
        ("quarterly revenue change", "down 1 percent"),
        ("quarterly diluted earnings per share", "$1.46"),
        ("quarterly diluted earnings per share change", "up 13 percent"),
        ("iPhone revenue", "$43.8 billion"),
        ("cash dividend per share", "$0.24 per share"),
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A change and the same change again, then the level reached.
        (
            "Revenue increased $13.6 billion or 7% to $211.9 billion.",
            [
                ("Revenue change", "increased $13.6 billion"),
                ("Revenue change", "increased 7%"),
                ("Revenue", "$211.9 billion"),
            ],
        ),
        # The same figure per share; a name inside a number ("Tier 1") stays a name.
        (
            "Net income was $9.3 billion, or $3.04 per share. The firm ended the year with a "
            "Common Equity Tier 1 ratio of 15.0%.",
            [
                ("Net income", "$9.3 billion"),
                ("Net income per share", "$3.04 per share"),
                ("Common Equity Tier 1 ratio", "15.0%"),
            ],
        ),
        # "rose to" says where it went; a name after the number; a count after its verb.
        (
            "Net income rose to $1.14 billion, which included a $2.9 billion special assessment. "
            "The bank processed 18,000 suspicious transactions.",
            [
                ("Net income", "$1.14 billion"),
                ("special assessment", "$2.9 billion"),
                ("suspicious transactions", "18,000"),
            ],
        ),
        # A rate moved "by", then where it went; a guidance range.
        (
            "The central bank cut its policy rate by 25 basis points to 3.75%. It expects "
            "revenue of $20.0 billion, plus or minus 2%.",
            [
                ("policy rate change", "cut by 25 basis points"),
                ("policy rate", "3.75%"),
                ("revenue", "$20.0 billion"),
                ("revenue range", "plus or minus 2%"),
            ],
        ),
        # The name after a verb of reporting, when the number comes far from it.
        (
            "NVIDIA reported revenue for the third quarter ended October 29, 2023, of $18.12 "
            "billion, up 206% from a year ago.",
            [("revenue", "$18.12 billion"), ("revenue change", "up 206%")],
        ),
        # Fractions and numbers glued to words measure nothing here; nor does a bare number.
        ("The target range is 5-1/4 to 5-1/2 percent for FY24, and 42 staff left.", []),
        ("", []),
    ],
)
def test_how_names_are_read(text: str, expected: list[tuple[str, str]]) -> None:
    assert pairs(text) == expected


def test_a_long_name_loses_its_trailing_phrase_first() -> None:
    text = (
        "Adjusted operating earnings per diluted share attributable to common holders for the "
        "full fiscal year were $3.71."
    )
    [figure] = named_figures(text)
    assert len(figure.name) <= NAME_CHARS
    assert figure.name.startswith("Adjusted operating earnings per diluted share")


def test_on_the_evaluation_set_names_are_the_analysts_and_values_the_documents() -> None:
    """Against the 52 documents' expected figures (an analyst's names and values): of those
    whose value is among the named figures, the share named with one of the analyst's words
    (compared by their first five letters). Measured 157 of 182 (0.86); the check keeps 0.8.
    Every value named is one the document states, and every name fits its bound."""
    documents = load(EVAL_SET, "all")
    found = agreed = 0
    for document in documents:
        named = named_figures(document.content)
        source = Source.of(document.content)
        for figure in named:
            assert 0 < len(figure.name) <= NAME_CHARS, figure
            assert value_grounded(figure.value, source), (document.doc_id, figure)
        for expected in document.expected_key_figures:
            same_value = [f for f in named if values_match(f.value, expected.value)]
            if same_value:
                found += 1
                words = stems(expected.name)
                agreed += any(words & stems(f.name) for f in same_value)
    assert found >= 170
    assert agreed / found >= 0.8


def test_each_pair_is_given_once() -> None:
    text = "Revenue was $5 billion. Revenue was $5 billion."
    assert named_figures(text) == [NamedFigure("Revenue", "$5 billion")]


def _named_as_before(text: str) -> list[tuple[str, str]]:
    """``named_figures`` as it was, looking for a sentence end from the clause's start before
    every quantity: quadratic in a table of bare numbers, which moves no clause (minutes of a
    blocked event loop for a 1 MiB one)."""
    figures: dict[tuple[str, str], None] = {}
    clause_start, previous = 0, None
    for match in quantity_matches(text):
        start, end = match.start(), match.end()
        boundary = names._last_sentence_end(text, clause_start, start)
        if boundary is not None:
            clause_start, previous = boundary, None
        if not names._measures_something(text, match):
            continue
        per_share = names._PER_SHARE.match(text, end)
        value = match.group(0).strip() + (" per share" if per_share else "")
        figure = names._figure(text, text[clause_start:start], end, value, previous)
        clause_start = per_share.end() if per_share else end
        if figure is None:
            continue
        previous = figure
        if len(figure.value) <= NAME_CHARS:
            figures[(figure.name, figure.value)] = None
    return list(figures)


PIECES = [
    *["1", "22", "3.5", "$4", "5%", "1,234", "$7.2 billion", " in 2024"],
    *[" ", ". ", ".", ";", ":\n", "!", "?", ",", "\n"],
    *["revenue ", "rose ", "to ", "Net income ", "per share "],
]


@pytest.mark.parametrize("seed", range(40))
def test_figures_are_the_ones_the_look_from_each_clause_start_found(seed: int) -> None:
    """Texts made of the pieces where a sentence end meets a number ("5. 6", "$3.", "x;7",
    runs of bare numbers): the same figures as before the look kept where it stopped."""
    chosen = random.Random(seed)
    text = "".join(chosen.choice(PIECES) for _ in range(400))

    assert pairs(text) == _named_as_before(text)
