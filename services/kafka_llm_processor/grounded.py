"""One document's answer, checked against the document: asked, judged for grounding, and asked
once more with the stricter instruction when it states what the document does not hold. The
processor answers this way, and ``libs/evaluation/cli.py`` measures exactly this."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from libs.common.schemas.documents import FinancialDocument, KeyFigure, Sentiment
from services.kafka_llm_processor.llm_client import LLMAnswer
from services.kafka_llm_processor.prompts import structured, summary_text, ungrounded_parts
from services.kafka_llm_processor.repetition import cut_loop

AskOnce = Callable[[list[str]], Awaitable[LLMAnswer]]
"""``ask(wrong)``: the model's answer to the document's question; asked again (``wrong``, what
the last answer got wrong, not empty) with the stricter instruction, which for a summary says
what was wrong (``prompts.again``). Transient failures are already retried by the caller."""


class GroundedAnswer(msgspec.Struct, frozen=True, kw_only=True):
    # A Struct: every document builds one, and a frozen dataclass takes ten times as long.
    answer: LLMAnswer
    """The final answer (the second, when the first was asked again)."""
    text: str
    """What is published of it: a summary without the loop it ends in (``repetition.py``),
    else the answer's text."""
    key_figures: list[KeyFigure] | None
    sentiment: Sentiment | None
    ungrounded: list[str]
    """What the final answer states that the document does not hold (empty: grounded)."""
    first_grounded: bool
    questions: int
    """1, or 2 when the first answer was not grounded and was asked again."""
    prompt_tokens: int
    """Over every question asked."""
    completion_tokens: int
    parts: int = 1
    """The parts the document was read in (more than one: longer than the model's context,
    ``long_documents.py``)."""
    loop_cut: int = 0
    """Characters of a loop cut from the end of the summary (0: it ended in none)."""


async def answer_grounded(
    document: FinancialDocument, ask: AskOnce, *, ask_again: bool
) -> GroundedAnswer:
    """Raises ``AnswerUnusable`` for an answer that is not the asked JSON, and whatever
    ``ask`` raises."""
    answer = await ask([])
    key_figures, sentiment, said, ungrounded = _judged(document, answer.text)
    first_grounded, questions = not ungrounded, 1
    prompt_tokens, completion_tokens = answer.prompt_tokens, answer.completion_tokens
    if ungrounded and ask_again:
        # At temperature 0 the same question gives the same answer: ask more strictly.
        answer = await ask(ungrounded)
        questions = 2
        prompt_tokens += answer.prompt_tokens
        completion_tokens += answer.completion_tokens
        key_figures, sentiment, said, ungrounded = _judged(document, answer.text)
    # A summary without the loop it may end in.
    text = answer.text if said is None else cut_loop(said)
    return GroundedAnswer(
        answer=answer,
        text=text,
        key_figures=key_figures,
        sentiment=sentiment,
        ungrounded=ungrounded,
        first_grounded=first_grounded,
        questions=questions,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        loop_cut=0 if said is None else len(said) - len(text),
    )


def _judged(
    document: FinancialDocument, answer: str
) -> tuple[list[KeyFigure] | None, Sentiment | None, str | None, list[str]]:
    """The answer read for the document's task: its key figures, its sentiment, a summary's
    text (a JSON answer's ``summary``), and what of it the document does not hold."""
    key_figures, sentiment = structured(document.task, answer)
    said = summary_text(answer) if document.task == "summary" else None
    return key_figures, sentiment, said, ungrounded_parts(document, key_figures, sentiment, said)
