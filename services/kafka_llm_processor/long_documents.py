"""Documents longer than the model's context: read in parts, their answers combined.

A filing runs to tens of thousands of tokens; the embedded model reads 4,096 by default, a vLLM
deployment 8,000 to 128,000. Nobody configures how much fits: the document is
asked whole, and when the server refuses it as longer than its context (a 400 every
OpenAI-compatible server words its own way), it is split in two near its middle at a
paragraph's end (else a line's, a sentence's, a word's) and each half is answered the same way,
so the parts are as large as the model takes, whatever the backend
(``libs/common/text_parts.py``).

The parts' answers become the document's:

- a summary: the parts' summaries, in order, are summarised as one document under the same
  heading (itself read in parts if they are still too long), so its quantities are the
  document's own;
- key figures: every part's, in document order, each once, the first ``MAX_FIGURES``;
- sentiment: the label most of the document's text has (parts weighted by their length), a
  tie going to the earlier part (a filing leads with its headline), with that part's reason.

Each part is answered as a whole document is (``grounded.py``: its schema from its own text,
judged and asked again when not grounded); the combined answer is judged against the whole
document. At most ``max_parts`` parts (``PROCESSOR_MAX_PARTS``): a longer document is refused
as ``too_long``, with the reason, to the dead letter topic (with 1, the server's refusal goes
there as it is).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec

from libs.common.clients.llm_errors import refused_as_too_long
from libs.common.schemas.documents import FinancialDocument, KeyFigure, Sentiment
from libs.common.text_parts import PartCount, most_text, read_each
from services.kafka_llm_processor.grounded import GroundedAnswer
from services.kafka_llm_processor.llm_client import LLMAnswer, PermanentLLMError
from services.kafka_llm_processor.prompts import AnswerUnusable, ungrounded_parts

MAX_FIGURES = 10
"""The most key figures a document read in parts keeps (the first, in document order)."""

AnswerWhole = Callable[[FinancialDocument], Awaitable[GroundedAnswer]]
"""The answer to a document (or a part) asked whole; raises what the server refused."""


def answer_in_parts(
    document: FinancialDocument, answer_whole: AnswerWhole, *, max_parts: int
) -> Awaitable[GroundedAnswer]:
    """The document's answer, asked whole, else read in parts (``GroundedAnswer.parts``).
    Raises :class:`TooManyParts`, and what ``answer_whole`` raises but a context overflow.
    (It hands back the coroutine that answers rather than awaiting it: every answer comes back
    through each coroutine between it and the processor.)"""
    if max_parts == 1:
        return answer_whole(document)  # a refusal stays the server's
    return _answer(document, answer_whole, PartCount(most=max_parts, setting="PROCESSOR_MAX_PARTS"))


async def _answer(
    document: FinancialDocument, answer_whole: AnswerWhole, counted: PartCount
) -> GroundedAnswer:
    try:
        return await answer_whole(document)  # a document that fits (nearly all)
    except PermanentLLMError as exc:
        if not refused_as_too_long(exc):
            raise
        overflow = exc
    cut = counted.cut(document.content, overflow)
    parts = await read_each(
        cut, lambda text: _answer(replace_content(document, text), answer_whole, counted)
    )
    if document.task == "summary":
        answered = await _summary_of(document, parts, answer_whole, counted)
    elif document.task == "key_figures":
        answered = _figures_of(document, parts)
    else:
        answered = _sentiment_of(document, parts, [len(text) for text in cut])
    # The parts counted so far; the whole document's answer, which ends last, has them all.
    return msgspec.structs.replace(answered, parts=counted.count)


def replace_content(document: FinancialDocument, content: str) -> FinancialDocument:
    return msgspec.structs.replace(document, content=content)


async def _summary_of(
    document: FinancialDocument,
    parts: list[GroundedAnswer],
    answer_whole: AnswerWhole,
    counted: PartCount,
) -> GroundedAnswer:
    summaries = replace_content(document, "\n\n".join(part.text for part in parts))
    return _spent(await _answer(summaries, answer_whole, counted), parts)


def _figures_of(document: FinancialDocument, parts: list[GroundedAnswer]) -> GroundedAnswer:
    seen = dict.fromkeys(
        (figure.name, figure.value) for part in parts for figure in part.key_figures or ()
    )
    figures = [KeyFigure(name=name, value=value) for name, value in list(seen)[:MAX_FIGURES]]
    text = msgspec.json.encode({"key_figures": figures}).decode()
    return _combined(document, parts, text, key_figures=figures, sentiment=None)


def _sentiment_of(
    document: FinancialDocument, parts: list[GroundedAnswer], lengths: list[int]
) -> GroundedAnswer:
    sentiments = [part.sentiment for part in parts if part.sentiment is not None]
    if len(sentiments) != len(parts):
        raise AnswerUnusable("a part's answer has no sentiment")
    chosen = sentiments[most_text([s.label for s in sentiments], lengths)]
    text = msgspec.json.encode({"label": chosen.label, "reason": chosen.reason}).decode()
    return _combined(document, parts, text, key_figures=None, sentiment=chosen)


def _combined(
    document: FinancialDocument,
    parts: list[GroundedAnswer],
    text: str,
    *,
    key_figures: list[KeyFigure] | None,
    sentiment: Sentiment | None,
) -> GroundedAnswer:
    """The parts' answers as one, judged against the whole document."""
    answer = LLMAnswer(
        text=text,
        model=parts[0].answer.model,
        prompt_tokens=sum(part.prompt_tokens for part in parts),
        completion_tokens=sum(part.completion_tokens for part in parts),
        finish_reason="stop",
    )
    return GroundedAnswer(
        answer=answer,
        text=text,
        key_figures=key_figures,
        sentiment=sentiment,
        ungrounded=ungrounded_parts(document, key_figures, sentiment),
        first_grounded=all(part.first_grounded for part in parts),
        questions=sum(part.questions for part in parts),
        prompt_tokens=answer.prompt_tokens,
        completion_tokens=answer.completion_tokens,
    )


def _spent(final: GroundedAnswer, parts: list[GroundedAnswer]) -> GroundedAnswer:
    """``final`` with what reading the parts took counted in."""
    return msgspec.structs.replace(
        final,
        first_grounded=final.first_grounded and all(part.first_grounded for part in parts),
        questions=final.questions + sum(part.questions for part in parts),
        prompt_tokens=final.prompt_tokens + sum(part.prompt_tokens for part in parts),
        completion_tokens=final.completion_tokens + sum(part.completion_tokens for part in parts),
    )
