"""A summary ending in a loop is published with the loop said once (``repetition.cut_loop``);
every other text is published as the model wrote it."""

from __future__ import annotations

import pytest

from services.kafka_llm_processor.repetition import cut_loop

LOOPED_SENTENCE = "The company's net debt rose to £2.3bn, pushing leverage to 3.4 times EBITDA."


def test_a_sentence_said_until_the_token_limit_is_kept_once() -> None:
    opening = "Brackenfield Chemicals' EBITDA fell 42% and its interim dividend was halved."
    answer = " ".join([opening, *[LOOPED_SENTENCE] * 6, "The company's net debt ro"])
    assert cut_loop(answer) == f"{opening} {LOOPED_SENTENCE}"


def test_a_loop_that_began_inside_an_earlier_sentence_keeps_its_own_sentence_whole() -> None:
    """The earlier sentence ends like the looped one: the loop's first turn starts inside it,
    and what is kept runs to the end of the looped sentence, not mid-way through it."""
    earlier = "Long-term debt was $6.8 billion, at an average rate of 4.1%."
    looped = "Long-term debt was also changed to $6.8 billion, at an average rate of 4.1%."
    answer = " ".join([earlier, *[looped] * 4, "Long-term debt was"])
    assert cut_loop(answer) == f"{earlier} {looped}"


def test_a_run_of_words_without_a_full_stop_is_cut_after_its_first_turn() -> None:
    answer = "Quillfeather Games, 2026-02-04, " + "Q2, Q3, Q4, 2026-02-05, " * 12 + "Q2, Q"
    assert cut_loop(answer) == "Quillfeather Games, 2026-02-04, Q2, Q3, Q4, 2026-02-05"


def test_one_word_said_again_and_again_is_kept_once() -> None:
    assert cut_loop("Aurelia Foods 10-K.\n\n" + "AUDIOLOGY\n\n" * 40 + "AUDIO") == (
        "Aurelia Foods 10-K.\n\nAUDIOLOGY"
    )


def test_an_abbreviation_is_not_taken_for_the_end_of_a_sentence() -> None:
    unit = "Aurelia Foods, Inc. (Form 10-K) AUDIOLOGY:"
    answer = " ".join(["Filed.", *[unit] * 5])
    assert cut_loop(answer) == "Filed. Aurelia Foods, Inc. (Form 10-K) AUDIOLOGY"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            "Revenue rose 12% to $4.8 billion. Margins widened. Shares rose 9%.", id="no loop"
        ),
        pytest.param(
            f"{LOOPED_SENTENCE} Shares fell 3%. {LOOPED_SENTENCE} Guidance was cut.",
            id="a sentence said again mid-answer",
        ),
        pytest.param(
            "Demand was very, very strong, and the outlook was raised to very, very",
            id="a short run twice",
        ),
        pytest.param("Revenue rose 5%, 5%, 5%", id="a loop too short to be one"),
        pytest.param(
            "Net income rose to $1.4 billion from $1.2 billion. "
            "Net income rose to $1.4 billion from $1.2 billion, ",
            id="a long sentence twice, the second not its copy",
        ),
        pytest.param("", id="empty"),
    ],
)
def test_text_that_does_not_end_in_a_loop_is_left_as_written(answer: str) -> None:
    assert cut_loop(answer) == answer
