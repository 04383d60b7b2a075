"""Document analysis: the spec's minimal flow, one LLM step on the event payload, then a
structured result.

``analyse`` asks the model for JSON constrained by :func:`analysis_schema`: a summary, which
may write a number only as the document writes one of its quantities
(libs/common/grounded_text.py), the sentiment, and key points copied from the document's own
clauses (libs/common/clauses.py); ``structure`` checks and shapes it into the run's output, and
judges whether every number in it is in the document (libs/common/grounding.py), for models
that do not follow a schema's ``pattern``, and said of what the document says it of (the
schema cannot hold that). An ungrounded answer is asked for once more with a stricter
instruction that names what was wrong; if it stays ungrounded the output says ``status:
ungrounded`` and names the numbers, never ``ok``.

A document longer than the model's context is read in parts (``libs/common/text_parts.py``):
asked whole, and on the server's refusal cut in two at the paragraph nearest its middle, each
half read the same way (both at once). The parts' summaries are summarised again, the sentiment
is the label most of the text has (a tie to the earlier part), the key points are the parts'
in order; the output says how many ``parts``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from libs.common.clauses import clauses
from libs.common.grounded_text import grounded_string, max_chars
from libs.common.grounding import (
    Source,
    misattributed,
    quantities_as_written,
    told_wrong,
    unfounded_numbers,
)
from libs.common.schemas.json_schema import choice_chain, inline_schema
from libs.common.text_parts import PartCount, most_text, read_each
from services.langgraph_runner.llm import is_context_overflow
from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

# Added to the instruction when the first answer stated numbers the document does not hold.
STRICTER = " Use only facts and figures written in the document, copied exactly as written."
ASKS = 2
"""Answers asked for at most: the first, then one more strictly when it was ungrounded."""

PROMPTS = {
    "analyse": "You are a financial analyst. Read the document and answer in JSON: a summary "
    "of at most two sentences, the sentiment for investors (positive, neutral or negative), and "
    "the most important facts or figures it reports.",
}


class DocumentInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # A filing of about 50,000 tokens: longer than a model's context, it is read in parts.
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=200_000)]
    title: Annotated[str, msgspec.Meta(max_length=500)] = ""
    doc_type: Annotated[str, msgspec.Meta(max_length=64)] = ""


SUMMARY = {"max_units": 60, "parts": 3}
POINT = {"max_units": 40, "parts": 2}
"""A summary's and a written key point's bounds (libs/common/grounded_text.py): at most
``parts`` parts, each perhaps one of the document's quantities and then up to ``max_units``
characters (two where a point, comma or sign comes first). A summary of words has about 180
characters at most, a key point 80; each figure written takes a part, so a loop over figures
ends too."""

KEY_POINTS = 3
"""Key points in an answer, at most."""
CLAUSE_CHARS = 200
"""The longest clause a key point copies (libs/common/clauses.py): most sentences of a press
release whole. Clauses of 120 characters stated fewer of the analysts' figures (docs/quality.md)."""
OFFERED_CLAUSES = 40
"""Clauses a key point may copy: the document's first ones (its lede and what follows)."""
MAX_PARTS = 64
"""Parts a document is read in at most: the longest input (200,000 characters) in parts of
about 3,000 characters, on a context of 2,048 tokens (the embedded model's default, 4,096,
takes parts twice as long)."""

Point = Annotated[str, msgspec.Meta(min_length=1, max_length=max_chars(**POINT))]


class _Verdict(msgspec.Struct):
    # Every field bounded, so that the grammar-constrained answer closes within max_tokens.
    # The schema the model is held by (analysis_schema) is narrower.
    summary: Annotated[str, msgspec.Meta(min_length=1, max_length=max_chars(**SUMMARY))]
    sentiment: Literal["positive", "neutral", "negative"]


class Analysis(_Verdict):
    """The answer, its key points as a list: what a model that ignores the schema writes."""

    key_points: Annotated[list[Point], msgspec.Meta(min_length=1, max_length=KEY_POINTS)]


class _ChainedPoint(msgspec.Struct):
    """A clause of the document, and perhaps the next one chosen (later in the document)."""

    point: Annotated[str, msgspec.Meta(min_length=1, max_length=CLAUSE_CHARS)]
    next: _ChainedPoint | None = None


class _AnalysisRead(_Verdict):
    """An answer as it is read: key points as a list (:class:`Analysis`), or the chain of
    clauses :func:`analysis_schema` asks for."""

    key_points: (
        Annotated[list[Point], msgspec.Meta(min_length=1, max_length=KEY_POINTS)] | _ChainedPoint
    )

    def points(self) -> list[str]:
        if isinstance(self.key_points, list):
            return self.key_points
        chained: list[str] = []
        point: _ChainedPoint | None = self.key_points
        # A server that ignores the schema may chain more than it allows.
        while point is not None and len(chained) < KEY_POINTS:
            chained.append(point.point)
            point = point.next
        return chained


def analysis_schema(source: str, content: str) -> dict[str, Any]:
    """:class:`Analysis`'s JSON Schema, its summary writing numbers only as ``source`` (the
    text its answer is checked against) writes its quantities, its key points a chain through
    ``content``'s clauses (:func:`point_chain`)."""
    schema = inline_schema(Analysis)
    written = quantities_as_written(source)
    properties = schema["properties"]
    properties["summary"] = grounded_string(written, **SUMMARY)
    offered = clauses(content, max_chars=CLAUSE_CHARS)[:OFFERED_CLAUSES]
    if not offered:
        properties["key_points"]["items"] = grounded_string(written, **POINT)
        return schema
    properties["key_points"], schema["$defs"] = point_chain(offered)
    return schema


def point_chain(offered: list[str]) -> tuple[dict[str, str], dict[str, Any]]:
    """Key points copied from the document's clauses: the first (its lede), then ``next``, one
    later in the document, and perhaps more, up to :data:`KEY_POINTS`. A small model that
    writes its own points writes "fiscal 2023", "fiscal 2023.fiscal 2023."; choosing among
    the document's clauses, its points state 124 of the evaluation set's 208 key figures,
    against 27 (docs/quality.md). Starting at the lede did better than starting anywhere, as
    it did for the processor's key figures; left free to stop there, the model often did
    (110 of 208)."""
    start, definitions = choice_chain(
        [
            {
                "type": "object",
                "properties": {"point": {"type": "string", "enum": [clause]}},
                "required": ["point"],
                "additionalProperties": False,
            }
            for clause in offered
        ],
        prefix="point",
        most=KEY_POINTS,
    )
    # Only the start leads to the first clause: requiring its next touches no other pick.
    first = definitions[start["$ref"].removeprefix("#/$defs/")]
    if "next" in first["properties"]:
        first["required"] = [*first["required"], "next"]
    return start, definitions


def distinct_points(points: list[str]) -> list[str]:
    """The key points stripped, each once (a small model often says one point two or three
    times), in order; case does not make a point new."""
    kept: dict[str, str] = {}
    for point in points:
        if text := point.strip():
            kept.setdefault(text.casefold(), text)
    return list(kept.values())


async def read_in_parts(
    content: str, read_whole: Callable[[str], Awaitable[_AnalysisRead]], parts: PartCount
) -> Analysis:
    """``read_whole(content)``'s answer, or, when the model refuses ``content`` as longer
    than its context, the answers of its halves combined (see the module's docstring)."""
    try:
        answer: _AnalysisRead = await read_whole(content)
        return Analysis(
            summary=answer.summary, sentiment=answer.sentiment, key_points=answer.points()
        )
    except Exception as exc:
        if not is_context_overflow(exc):
            raise
        refusal = exc
    cut = parts.cut(content, refusal)
    halves_read = await read_each(cut, lambda half: read_in_parts(half, read_whole, parts))
    summaries = "\n\n".join(half.summary for half in halves_read)
    overall = await read_in_parts(summaries, read_whole, parts)
    chosen = most_text([half.sentiment for half in halves_read], [len(text) for text in cut])
    sentiment = halves_read[chosen].sentiment
    points = distinct_points([point for half in halves_read for point in half.key_points])
    return Analysis(summary=overall.summary, sentiment=sentiment, key_points=points[:KEY_POINTS])


class DocumentState(TypedDict, total=False):
    title: str
    doc_type: str
    content: str
    analysis: dict[str, Any]
    asked: int
    parts: int
    result: dict[str, Any]


def grounding_source(state: DocumentState) -> str:
    """What the answer's numbers must come from: the title and the content."""
    return f"{state['title']}\n{state['content']}"


def build(deps: WorkflowDeps) -> StateGraph[DocumentState, RunContext, Any, Any]:
    async def analyse(state: DocumentState, runtime: Runtime[RunContext]) -> DocumentState:
        # The type on a line of its own, as the processor shows it: after " - " on the title's
        # line, a small model wrote it into the summary ("-`Earnings_Report_Report...").
        heading = "\n".join(
            part
            for part in (state["title"], state["doc_type"] and f"({state['doc_type']})")
            if part
        )
        asked = state.get("asked", 0)
        instruction = prompt_of(runtime, PROMPTS, "analyse") + (STRICTER if asked else "")
        if asked and (wrong := state.get("result", {}).get("ungrounded")):
            instruction += told_wrong(wrong)

        async def read_whole(content: str) -> _AnalysisRead:
            shown = f"{heading}\n\n{content}" if heading else content
            return await deps.llm.structured(
                [("system", instruction), ("user", shown)],
                parameters_of(runtime),
                _AnalysisRead,
                # A summary of at most 521 characters (its pattern) and three points of 200, at
                # two characters a token: 561 tokens and the JSON around them.
                max_tokens=768,
                # Numbers from anywhere in the document; key points from this part's clauses.
                schema=analysis_schema(grounding_source(state), content),
            )

        parts = PartCount(most=MAX_PARTS, setting="document analysis' MAX_PARTS")
        answer = await read_in_parts(state["content"], read_whole, parts)
        return {"analysis": msgspec.to_builtins(answer), "asked": asked + 1, "parts": parts.count}

    def structure(state: DocumentState) -> DocumentState:
        analysis = msgspec.convert(state["analysis"], Analysis)
        points = distinct_points(analysis.key_points)
        summary = analysis.summary.strip()
        source = Source.of(grounding_source(state))
        # The schema holds the texts to the document's numbers, not to what each is said of.
        unfounded = [
            n
            for text in (summary, *points)
            for n in (*unfounded_numbers(text, source), *misattributed(text, source))
        ]
        return {
            "result": {
                "title": state["title"],
                "status": "ungrounded" if unfounded else "ok",
                "summary": summary,
                "sentiment": analysis.sentiment,
                "key_points": points,
                "ungrounded": unfounded,
                "word_count": len(state["content"].split()),
                "parts": state.get("parts", 1),
            }
        }

    def ask_again_or_end(state: DocumentState) -> str:
        if state["result"]["status"] == "ungrounded" and state.get("asked", 0) < ASKS:
            return "analyse"
        return END

    graph = StateGraph(DocumentState, context_schema=RunContext)
    graph.add_node("analyse", analyse, retry_policy=deps.retry)
    graph.add_node("structure", structure)
    graph.add_edge(START, "analyse")
    graph.add_edge("analyse", "structure")
    graph.add_conditional_edges("structure", ask_again_or_end, ["analyse", END])
    return graph


def initial_state(document: DocumentInput, _: WorkflowDeps) -> dict[str, Any]:
    return {"title": document.title, "doc_type": document.doc_type, "content": document.content}


def output(state: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = state["result"]
    return result


SPEC = WorkflowSpec(
    id="document_analysis",
    title="Document analysis",
    description="One LLM step on a document (summary, sentiment, key points as JSON), then a "
    "structured result whose numbers are checked against the document (asked once more if "
    "not; else marked ungrounded): the spec's minimal event-driven flow.",
    input_type=DocumentInput,
    build=build,
    initial_state=initial_state,
    output=output,
    prompts=PROMPTS,
)
