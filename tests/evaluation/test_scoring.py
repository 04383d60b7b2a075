"""The key figure match rule of libs/evaluation/scoring.py: exact after normalisation, sign
left out, one to one."""

from __future__ import annotations

import pytest

from libs.evaluation import scoring
from libs.evaluation.eval_set import DEFAULT_SET, load


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("89,500 million", "$89.5 billion"),
        ("USD 89.5bn", "$89.5 billion"),
        ("4.1%", "4.1 percent"),
        ("-$12 million", "a loss of $12 million"),
        ("$0.40-$0.55", "$0.40-$0.55 per share"),
        ("25 bps", "0.25%"),
        ("Q3  record", "q3 record"),
    ],
)
def test_the_same_figure_written_differently_matches(predicted: str, expected: str) -> None:
    assert scoring.values_match(predicted, expected)


@pytest.mark.parametrize(
    ("predicted", "expected"),
    [
        ("$89.6 billion", "$89.5 billion"),
        ("89.5%", "$89.5 billion"),
        ("€89.5 billion", "$89.5 billion"),
        ("$0.40", "$0.40-$0.55 per share"),
        ("record", "$3 billion"),
        ("", ""),
    ],
)
def test_a_different_figure_does_not_match(predicted: str, expected: str) -> None:
    assert not scoring.values_match(predicted, expected)


def test_a_figure_listed_twice_counts_once() -> None:
    counts = scoring.figure_counts(["$3 billion", "3bn", "12%"], ["$3 billion", "12%"])
    assert (counts.matched, counts.precision, counts.recall) == (2, 2 / 3, 1.0)
    assert counts.f1 == pytest.approx(0.8)


def test_matching_is_one_to_one_at_its_largest() -> None:
    # "3" (no currency) is either; greedy would give it "$3" and leave "$3" nothing to match.
    assert scoring.matched_figures(["3", "$3"], ["$3", "€3"]) == 2


def test_every_expected_figure_of_the_set_matches_itself() -> None:
    values = [[f.value for f in d.expected_key_figures] for d in load(DEFAULT_SET, "all")]
    counts = scoring.micro(scoring.figure_counts(v, v) for v in values)
    assert counts.precision == counts.recall == 1.0
    assert counts.expected == 208


def test_confusion_and_percentiles() -> None:
    assert scoring.confusion([("positive", "negative"), ("neutral", "neutral")]) == [
        [0, 0, 1],
        [0, 1, 0],
        [0, 0, 0],
    ]
    assert scoring.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert scoring.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95) == 5.0
    assert scoring.percentile([], 50) is None


def test_repetition_is_the_share_of_trigrams_said_before() -> None:
    assert scoring.repetition("Revenue rose 12% to $4.8 billion; the margin held.") == 0.0
    assert scoring.repetition("too short") == 0.0
    loop = "Microsoft Cloud Microsoft Cloud Microsoft Cloud Microsoft Cloud"  # 6 trigrams, 2 new
    assert scoring.repetition(loop) == 1 - 2 / 6
    assert scoring.repetition("Buy buy BUY buy buy") == 1 - 1 / 3  # casefolded
    assert scoring.repetition(loop) > scoring.REPETITIVE
