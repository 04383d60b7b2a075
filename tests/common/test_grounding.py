"""The grounding rules on the ways filings write figures: units, scales, signs, percentages,
basis points, ranges and thousands separators."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libs.common.clauses import clauses
from libs.common.grounding import (
    _QUANTITY,
    Quantity,
    Source,
    faithfulness,
    misattributed,
    quantities,
    quantities_as_written,
    reason_grounded,
    unfounded_numbers,
    ungrounded_values,
    value_grounded,
)
from libs.evaluation.eval_set import DEFAULT_SET, load
from services.kafka_llm_processor.send_samples import sample_documents

FILING = Source.of(
    "Northwind reported revenue of $89.5 billion for the quarter, up 12.4% from a year "
    "earlier, while operating costs were down 1 percent. Net loss narrowed to a loss of "
    "$12 million, or $0.15 per share. The board approved a buyback of USD 3.2bn and a "
    "€450m bond. Units shipped reached 2,100,000. The central bank raised its policy rate "
    "by 25 basis points to a range of 4.25%-4.50%."
)


@pytest.mark.parametrize(
    "value",
    [
        "$89.5 billion",
        "89.5B",
        "89,500 million",
        "$89,500,000,000",
        "USD 89.5bn",
        "12.4%",
        "12.4 percent",
        "-1%",
        "1%",
        "down 1 percent",
        "-$12 million",
        "$12M",
        "$0.15 per share",
        "3.2 billion",
        "EUR 450 million",
        "2.1 million",
        "0.25%",
        "25 bps",
        "4.25%",
        "4.25% - 4.50%",
        "4.50%",
    ],
)
def test_a_value_the_filing_states_is_grounded(value: str) -> None:
    assert value_grounded(value, FILING), (value, quantities(value))


@pytest.mark.parametrize(
    "value",
    [
        "$89.4 billion",  # off by rounding: not what the filing says
        "89.5 million",  # wrong scale
        "$8.95 billion",
        "-12.4%",  # the filing's 12.4% is a rise
        "12.4",  # 12.4 as an amount is not the percentage
        "$89.5 billion and 13%",  # one of two quantities invented
        "€89.5 billion",  # the filing's 89.5 billion are dollars
        "£450m",
        "25%",  # 25 basis points are 0.25 points
        "fictitious_value_12345678901234567890123",
        "record profit",  # words the filing does not use
        "buyback",  # words it does use: still no figure
    ],
)
def test_a_value_the_filing_does_not_state_is_not(value: str) -> None:
    assert not value_grounded(value, FILING), (value, quantities(value))


def test_a_value_without_a_number_is_no_figure() -> None:
    # The words are the filing's, but a key figure's value is a number.
    assert not value_grounded("policy rate", FILING)
    assert not value_grounded("Northwind", FILING)
    assert ungrounded_values(["Northwind", "$89.5 billion", "$90 billion"], FILING) == [
        "Northwind",
        "$90 billion",
    ]


def test_quantities_read_signs_scales_and_ranges() -> None:
    assert quantities("a range of 4.25%-4.50%") == [
        Quantity(4.25, "percent", negative=False),
        Quantity(4.5, "percent", negative=False),
    ]
    assert quantities("sales fell 3.5% to €1,250 million", falling_words=True) == [
        Quantity(3.5, "percent", negative=True),
        Quantity(1.25e9, "amount", negative=False, currency="EUR"),
    ]
    assert quantities("cut by 50 bps", falling_words=True) == [
        Quantity(0.5, "percent", negative=True)
    ]
    assert quantities("a 19% decline", falling_words=True)[0].negative
    assert not quantities("sales fell 3.5%")[0].negative  # only a minus sign, in an answer
    assert quantities("12 months") == [Quantity(12, "amount", negative=False)]
    # The level a fall reached is not itself negative.
    assert quantities("margin fell to 8%", falling_words=True) == [
        Quantity(8, "percent", negative=False)
    ]


def test_a_reason_must_cite_the_filing() -> None:
    assert reason_grounded("Revenue up 12.4% and the buyback", FILING)
    assert reason_grounded("the loss narrowed", FILING)
    # Words every reason uses cite nothing; invented words and numbers are not there.
    assert not reason_grounded("The document is positive for investors.", FILING)
    assert not reason_grounded("Strong demand for cloud services in Asia", FILING)
    assert not reason_grounded("Revenue grew 30%", FILING)
    assert not reason_grounded("", FILING)


def test_summary_faithfulness_counts_the_numbers_found() -> None:
    assert faithfulness("Revenue was $89.5 billion, up 12.4%.", FILING) == 1.0
    assert faithfulness("Revenue was $89.5 billion, up 15%.", FILING) == 0.5
    assert faithfulness("Revenue rose.", FILING) is None
    assert unfounded_numbers("Revenue was $89.5 billion, up 15%.", FILING) == ["15%"]


# Texts dense in what a quantity's match turns on: digits, points, commas, signs, spaces,
# currency symbols and codes, scale and percent words, and other letters around them.
_PIECES = st.sampled_from(
    [*"0123456789.,-+\u2212\u2013 $€£¥%\nab", "USD", "usd", "EUR", " percent", "bn", "m", "bps"]
)


@given(st.lists(_PIECES, max_size=40).map("".join))
@settings(max_examples=400)
def test_quantities_are_read_as_the_whole_pattern_reads_them(text: str) -> None:
    """The scan that tries the quantity pattern only near digits finds exactly what trying it
    at every character finds."""
    everywhere = [match.group(0).strip() for match in _QUANTITY.finditer(text)]
    assert quantities_as_written(text) == list(dict.fromkeys(everywhere))
    assert len(quantities(text)) == len(everywhere)


def test_a_quantity_is_read_whole_from_its_sign_and_currency_code() -> None:
    """Up to seven characters before the first digit: a sign, a space, a code, a space, a point."""
    text = "Revenue - USD .5bn, costs -$0.5 million, a range of 4.25%-4.50% and 25 bps."
    everywhere = [match.group(0).strip() for match in _QUANTITY.finditer(text)]

    assert quantities_as_written(text) == everywhere
    assert everywhere == ["- USD .5bn", "-$0.5 million", "4.25%", "-4.50%", "25 bps"]
    assert quantities_as_written(FILING.text) == list(
        dict.fromkeys(match.group(0).strip() for match in _QUANTITY.finditer(FILING.text))
    )


APPLE = Source.of(
    "Apple reports fourth quarter results\nThe Company posted quarterly revenue of $89.5 "
    "billion, down 1 percent year over year, and quarterly diluted earnings per share of "
    "$1.46, up 13 percent year over year. The board declared a cash dividend of $0.24 per "
    "share."
)


@pytest.mark.parametrize(
    ("text", "found"),
    [
        # What the embedded model wrote of this filing: EPS's rise given to revenue.
        (
            "Apple's fiscal 2023 fourth quarter results include: 13 percent revenue "
            "increase, down 1 percent.",
            ["13 percent said of revenue; the document's is of earnings per share"],
        ),
        (
            "Revenue rose 13 percent.",
            ["13 percent said of revenue; the document's is of earnings per share"],
        ),
        (
            "EPS of $89.5 billion",
            ["$89.5 billion said of earnings per share; the document's is of revenue"],
        ),
        # Said of what the filing says it of, under another of its names.
        ("Net sales were $89.5 billion, down 1 percent, and EPS rose 13 percent.", []),
        ("Apple posted $89.5 billion in revenue and $1.46 per share.", []),
        ("The dividend was $0.24 per share.", []),
        # Said of nothing the check knows: not judged.
        ("Results include a 13 percent gain.", []),
        # Not in the filing at all: unfounded_numbers' to name, not this check's.
        ("Revenue rose 9 percent.", []),
    ],
)
def test_a_quantity_said_of_another_metric_than_the_filings_is_named(
    text: str, found: list[str]
) -> None:
    assert misattributed(text, APPLE) == found


def test_the_filings_own_sentences_and_the_reference_summaries_are_never_misattributed() -> None:
    """What the document says, said again, and what people wrote of it (the evaluation set's
    reference summaries and key figures): none is named by the check."""
    for document in sample_documents():
        source = Source.of(f"{document.title}\n{document.content}")
        for sentence in clauses(document.content, max_chars=len(document.content)):
            assert misattributed(sentence, source) == [], (document.doc_id, sentence)
    for evaluated in load(DEFAULT_SET, "all"):
        source = Source.of(f"{evaluated.title}\n{evaluated.content}")
        assert misattributed(evaluated.reference_summary, source) == [], evaluated.doc_id
        for figure in evaluated.expected_key_figures:
            said = f"{figure.name}: {figure.value}"
            assert misattributed(said, source) == [], (evaluated.doc_id, said)
