"""What the LLM is asked for each task, and how its answer becomes a result."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec

from libs.common.figure_names import NAME_CHARS, NamedFigure, named_figures
from libs.common.grounded_text import grounded_string, max_chars
from libs.common.grounding import (
    Source,
    misattributed,
    quantities_as_written,
    reason_grounded,
    says_of_metrics,
    told_wrong,
    ungrounded_values,
)
from libs.common.schemas.documents import (
    FinancialDocument,
    KeyFigure,
    Sentiment,
    SentimentLabel,
    Task,
)
from libs.common.schemas.json_schema import choice_chain, inline_schema
from libs.common.unreadable_json import UNREADABLE_JSON, why_unreadable

SHORT_TEXT = 40
_YEAR = re.compile(r"(?:19|20)\d\d")
ShortText = Annotated[str, msgspec.Meta(max_length=SHORT_TEXT)]
Named = Annotated[str, msgspec.Meta(max_length=NAME_CHARS)]


class _Figure(msgspec.Struct):
    name: ShortText
    value: ShortText


class _ChainedFigure(msgspec.Struct):
    """A figure the document names, and perhaps the next one chosen (later in the document)."""

    name: Named
    value: Named
    next: _ChainedFigure | None = None


# Bounded so that a grammar-constrained answer always closes within max_tokens.
_FigureList = Annotated[list[_Figure], msgspec.Meta(max_length=5)]


class KeyFiguresAnswer(msgspec.Struct):
    key_figures: _FigureList


class _FiguresRead(msgspec.Struct):
    """A key-figures answer as it is read: a list (``KeyFiguresAnswer``), or the chain that
    ``answer_schema`` asks for when the document names its figures."""

    key_figures: _FigureList | _ChainedFigure

    def pairs(self) -> list[tuple[str, str]]:
        if isinstance(self.key_figures, list):
            return [(f.name, f.value) for f in self.key_figures]
        chained: list[tuple[str, str]] = []
        figure: _ChainedFigure | None = self.key_figures
        while figure is not None:
            chained.append((figure.name, figure.value))
            figure = figure.next
        return chained


CHAIN_TOKENS = 320
"""The most a chain of key figures may take, counting two characters a token (it closes
within the processor's ``max_tokens``, 384)."""
CHAIN_STEP_TOKENS = 16
"""A figure's JSON around its name and value, in tokens, at most."""


SUMMARY = {"max_units": 80, "parts": 4}
"""A summary's bounds (libs/common/grounded_text.py): about 320 characters of words (three
sentences), and at most five of the document's quantities."""


class SummaryAnswer(msgspec.Struct):
    # The schema the model is held by (answer_schema) is narrower.
    summary: Annotated[str, msgspec.Meta(max_length=max_chars(**SUMMARY))]


_decode_summary = msgspec.json.Decoder(SummaryAnswer).decode

REASON = {"max_units": 60, "parts": 2}
"""A sentiment reason's bounds (libs/common/grounded_text.py): about 120 characters of words,
and at most three of the document's quantities."""


class SentimentAnswer(msgspec.Struct):
    label: SentimentLabel
    # The schema the model is held by (answer_schema) is narrower.
    reason: Annotated[str, msgspec.Meta(max_length=max_chars(**REASON))]


INSTRUCTIONS: dict[Task, str] = {
    "summary": "You are a financial analyst. Summarize the document in at most three sentences, "
    "as JSON.",
    "key_figures": "You are a financial analyst. List the key figures the document reports, "
    "each with its name and value, as JSON.",
    "sentiment": "You are a financial analyst. Say whether the document is positive, neutral or "
    "negative for investors, with a short reason, as JSON.",
}

SCHEMAS: dict[Task, dict[str, Any]] = {
    "summary": inline_schema(SummaryAnswer),
    "key_figures": inline_schema(KeyFiguresAnswer),
    "sentiment": inline_schema(SentimentAnswer),
}


def answer_schema(document: FinancialDocument) -> dict[str, Any]:
    """The JSON Schema the document's answer is constrained by. Key figures are chosen among
    the pairs the document names (libs/common/figure_names.py), or, when it names none, have a
    value that is one of the quantities the document writes, as it writes them; a summary or a
    sentiment's reason writes numbers only so: a model that follows the schema (a grammar on
    the embedded model, guided decoding on vLLM) cannot state a figure the document does not
    hold."""
    schema = SCHEMAS[document.task]
    if document.task == "summary":
        # The title's and the content's, years included: a summary that starts from the title
        # says "fiscal 2023", and without 2023 to copy the model wrote "fiscal 20%".
        written = quantities_as_written(f"{document.title}\n{document.content}")
        return {**schema, "properties": {"summary": grounded_string(written, **SUMMARY)}}
    # The content's quantities (or figures), not the title's or the date line's: given the
    # date line, a small model gives the date as its reason.
    if document.task == "sentiment":
        reason = grounded_string(quantities_as_written(document.content), **REASON)
        return {**schema, "properties": {**schema["properties"], "reason": reason}}
    named = named_figures(document.content)
    if named:
        return _chain(named)
    figures = schema["properties"]["key_figures"]
    items = _named_by_the_model(figures["items"], quantities_as_written(document.content))
    return {**schema, "properties": {"key_figures": {**figures, "items": items}}}


def _chain(named: list[NamedFigure]) -> dict[str, Any]:
    """Key figures chosen among the pairs the document names, each name with its own value:
    a small model that names figures itself names them badly ("Apple: 13 percent", "Apple
    Inc.: 13 percent"). The answer is a chain: the document's first figure (its headline, in
    a filing), then perhaps ``next``, one named later in the document, and so on. So no figure
    comes twice (asked for a list, a small model at temperature 0 lists one pair again and
    again), and the chain ends by the document's last figure. Letting the model start
    anywhere, it started late and left the headline out (F1 0.457 against 0.627 on the
    evaluation set, docs/quality.md). The document's first figures only, as many as
    ``CHAIN_TOKENS`` holds."""
    kept, tokens = [], 0
    for figure in named:
        tokens += (len(figure.name) + len(figure.value)) // 2 + CHAIN_STEP_TOKENS
        if tokens > CHAIN_TOKENS:
            break
        kept.append(figure)
    start, definitions = choice_chain(
        [
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "enum": [figure.name]},
                    "value": {"type": "string", "enum": [figure.value]},
                },
                "required": ["name", "value"],
                "additionalProperties": False,
            }
            for figure in kept
        ],
        prefix="figure",
    )
    return {
        "type": "object",
        "properties": {"key_figures": start},
        "required": ["key_figures"],
        "$defs": definitions,
    }


def _named_by_the_model(figure: dict[str, Any], written: list[str]) -> dict[str, Any]:
    """A figure whose name the model writes and whose value is one of the document's
    quantities. No bare years (given those, a small model answers "Apple: 2023"), and within
    the value's length bound, so that every choice decodes."""
    written = [q for q in written if len(q) <= SHORT_TEXT and not _YEAR.fullmatch(q)]
    if not written:
        return figure
    value = {"type": "string", "enum": written}
    return {**figure, "properties": {**figure["properties"], "value": value}}


# Added to the instruction when an answer was not grounded in the document (asked once more).
STRICTER: dict[Task, str] = {
    "summary": " Say each figure of what the document says it of.",
    "key_figures": " Copy each value exactly as the document writes it; list only figures the "
    "document states.",
    "sentiment": " In the reason, use the document's own words.",
}


class AnswerUnusable(Exception):
    """The model's answer does not fit the task (cut short, or not the asked JSON)."""


def document_heading(document: FinancialDocument) -> str:
    """The title and the line under it, as the model is shown them."""
    return (
        f"{document.title}\n({document.doc_type}, {document.source}, "
        f"{document.published_at.date().isoformat()})"
    )


def grounding_text(document: FinancialDocument) -> str:
    """Everything the model was shown of the document: what a grounded answer may state."""
    return f"{document_heading(document)}\n\n{document.content}"


def messages_for(
    document: FinancialDocument, *, strict: bool = False, wrong: Sequence[str] = ()
) -> list[dict[str, str]]:
    """The question; ``strict`` (or ``wrong``, what the last answer got wrong) asks it again
    with the stricter instruction."""
    instruction = INSTRUCTIONS[document.task] + again(document.task, strict=strict, wrong=wrong)
    return [
        {"role": "system", "content": instruction},
        {
            "role": "user",
            "content": grounding_text(document),
        },
    ]


def again(task: Task, *, strict: bool = False, wrong: Sequence[str] = ()) -> str:
    """What the instruction gains when the question is asked again (``strict``, or ``wrong``:
    what the last answer got wrong): nothing the first time. A summary is told what was wrong
    (a number said of another metric, and what the document says it of); a sentiment told its
    reason was wrong did worse on the evaluation set (grounded after the retry 0.744 -> 0.692,
    docs/quality.md), and key figures are hardly ever asked again, so they are not told."""
    if not (strict or wrong):
        return ""
    return STRICTER[task] + (told_wrong(wrong) if wrong and task == "summary" else "")


def summary_text(text: str) -> str:
    """A summary answer's text: the ``summary`` of its JSON, or the whole answer from a server
    that ignores the schema and answers in prose. Raises ``AnswerUnusable`` for JSON cut
    short, and for no summary at all: an empty answer (a reasoning model whose budget ran out
    while it thought, a content filter) published as an ``ok`` result says nothing."""
    if not text.lstrip().startswith("{"):
        summary = text  # prose: no JSON to read (a failed decode would cost the exception)
    else:
        try:
            summary = _decode_summary(text).summary
        except UNREADABLE_JSON as exc:
            raise _not_the_asked_json(exc) from exc
    if not summary.strip():
        raise AnswerUnusable("the model's answer holds no summary (empty)")
    return summary


def structured(task: Task, text: str) -> tuple[list[KeyFigure] | None, Sentiment | None]:
    try:
        if task == "key_figures":
            figures = msgspec.json.decode(text, type=_FiguresRead).pairs()
            # A small model lists the same figure again and again; once is what it says.
            unique = dict.fromkeys((name.strip(), value.strip()) for name, value in figures)
            return [KeyFigure(name=name, value=value) for name, value in unique], None
        if task == "sentiment":
            answer = msgspec.json.decode(text, type=SentimentAnswer)
            return None, Sentiment(label=answer.label, reason=answer.reason)
    except UNREADABLE_JSON as exc:
        raise _not_the_asked_json(exc) from exc
    return None, None


def _not_the_asked_json(exc: msgspec.DecodeError | RecursionError) -> AnswerUnusable:
    """Why an answer that does not decode is unusable. msgspec raises ``RecursionError`` for
    JSON nested deeper than the stack (a chain of key figures, or any value an answer adds,
    a thousand levels deep): an unusable answer too, not a failure of the record's handling."""
    return AnswerUnusable(f"the model's answer is not the asked JSON: {why_unreadable(exc)}")


def ungrounded_parts(
    document: FinancialDocument,
    key_figures: list[KeyFigure] | None,
    sentiment: Sentiment | None,
    summary: str | None = None,
) -> list[str]:
    """What the answer states that the document does not hold (empty: grounded). A summary's
    numbers are the document's by its schema (the evaluation scores them); what it says each
    is of is judged here."""
    if summary is not None:
        if not says_of_metrics(summary):  # most summaries: no document to read for the check
            return []
        return misattributed(summary, Source.of(grounding_text(document)))
    if key_figures is None and sentiment is None:
        return []
    source = Source.of(grounding_text(document))
    found = ungrounded_values((f.value for f in key_figures or ()), source)
    if sentiment is not None and not reason_grounded(sentiment.reason, source):
        found.append(f"reason: {sentiment.reason}")
    return found
