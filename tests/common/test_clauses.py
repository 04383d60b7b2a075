"""A document's clauses, as key points copy them: its sentences, long ones cut where they join
clauses, every clause word for word from the text."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from libs.common.clauses import clauses

APPLE = (
    "Apple today announced financial results for its fiscal 2023 fourth quarter ended "
    "September 30, 2023. The Company posted quarterly revenue of $89.5 billion, down 1 percent "
    "year over year, and quarterly diluted earnings per share of $1.46, up 13 percent year over "
    "year. iPhone revenue was $43.8 billion, and Services set an all-time revenue record of "
    "$22.3 billion."
)


def test_sentences_are_clauses_without_their_closing_point() -> None:
    assert clauses("Inflation remains elevated. Job gains have been robust.", max_chars=200) == [
        "Inflation remains elevated",
        "Job gains have been robust",
    ]


def test_a_long_sentence_is_cut_where_it_joins_clauses_and_a_lowercase_start_is_a_sentence() -> (
    None
):
    assert clauses(APPLE, max_chars=100) == [
        "Apple today announced financial results for its fiscal 2023 fourth quarter ended "
        "September 30, 2023",
        "The Company posted quarterly revenue of $89.5 billion, down 1 percent year over year",
        "quarterly diluted earnings per share of $1.46, up 13 percent year over year",
        "iPhone revenue was $43.8 billion, and Services set an all-time revenue record of "
        "$22.3 billion",
    ]


def test_abbreviations_and_decimal_points_end_no_sentence() -> None:
    text = (
        'Brenton Outdoor Brands, Inc. (the "Company") agreed terms. The U.S. Treasury sold '
        "$12.5 billion of bills, e.g. short ones. Dr. Lee left."
    )
    assert clauses(text, max_chars=200) == [
        'Brenton Outdoor Brands, Inc. (the "Company") agreed terms',
        "The U.S. Treasury sold $12.5 billion of bills, e.g. short ones",
        "Dr. Lee left",
    ]


def test_parts_are_joined_again_while_they_fit_and_a_part_with_no_cut_keeps_its_first_words() -> (
    None
):
    text = "Revenue rose, margins widened, costs fell, and " + "very " * 30 + "long."
    assert clauses(text, max_chars=41) == [
        "Revenue rose, margins widened, costs fell",
        "very very very very very very very very",
    ]


def test_a_closing_quote_stays_with_its_sentence() -> None:
    text = "The chief executive said \u201cdemand was strong.\u201d Shares rose 9 percent."
    assert clauses(text, max_chars=100) == [
        "The chief executive said \u201cdemand was strong.\u201d",
        "Shares rose 9 percent",
    ]


def test_each_clause_comes_once() -> None:
    assert clauses("Shares rose. Shares rose.\nShares rose.", max_chars=50) == ["Shares rose"]


@given(
    st.text(alphabet=st.sampled_from("ab .,;!?\n$1A"), max_size=300),
    st.integers(min_value=5, max_value=80),
)
# Hypothesis found it: a piece after an abbreviation was joined to it by a space, where the
# text had a line break.
@example("A.\n1", 5)
def test_every_clause_is_the_text_s_own_words_within_the_bound(text: str, most: int) -> None:
    for clause in clauses(text, max_chars=most):
        assert clause
        assert clause in text
        assert len(clause) <= most
