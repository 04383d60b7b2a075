"""Document analysis: the spec's minimal flow, one LLM step on the event payload, then a
structured result.

``analyse`` asks the model for JSON constrained by :func:`analysis_schema` (summary, sentiment,
key points), whose texts may write a number only as the document writes one of its quantities
(libs/common/grounded_text.py); ``structure`` checks and shapes it into the run's output, and
judges whether every number in it is in the document (libs/common/grounding.py), for models
that do not follow a schema's ``pattern``. An ungrounded answer is asked for once more with a
stricter instruction; if it stays ungrounded the output says ``status: ungrounded`` and names
the numbers, never ``ok``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from libs.common.grounded_text import grounded_string, max_chars
from libs.common.grounding import Source, quantities_as_written, unfounded_numbers
from libs.common.schemas.json_schema import inline_schema
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
    content: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    title: Annotated[str, msgspec.Meta(max_length=500)] = ""
    doc_type: Annotated[str, msgspec.Meta(max_length=64)] = ""


SUMMARY = {"max_units": 60, "parts": 3}
POINT = {"max_units": 40, "parts": 2}
"""A summary's and a key point's bounds (libs/common/grounded_text.py): at most ``parts``
parts, each perhaps one of the document's quantities and then up to ``max_units`` characters
(two where a point, comma or sign comes first). A summary of words has about 180 characters at
most, a key point 80; each figure written takes a part, so a loop over figures ends too."""

Point = Annotated[str, msgspec.Meta(min_length=1, max_length=max_chars(**POINT))]


class Analysis(msgspec.Struct):
    # Every field bounded, so that the grammar-constrained answer closes within max_tokens.
    # The schema the model is held by (analysis_schema) is narrower.
    summary: Annotated[str, msgspec.Meta(min_length=1, max_length=max_chars(**SUMMARY))]
    sentiment: Literal["positive", "neutral", "negative"]
    key_points: Annotated[list[Point], msgspec.Meta(min_length=1, max_length=3)]


def analysis_schema(source: str) -> dict[str, Any]:
    """:class:`Analysis`'s JSON Schema, its texts writing numbers only as ``source`` (the text
    its answer is checked against) writes its quantities."""
    schema = inline_schema(Analysis)
    written = quantities_as_written(source)
    properties = schema["properties"]
    properties["summary"] = grounded_string(written, **SUMMARY)
    properties["key_points"]["items"] = grounded_string(written, **POINT)
    return schema


def distinct_points(points: list[str]) -> list[str]:
    """The key points stripped, each once (a small model often says one point two or three
    times), in order; case does not make a point new."""
    kept: dict[str, str] = {}
    for point in points:
        if text := point.strip():
            kept.setdefault(text.casefold(), text)
    return list(kept.values())


class DocumentState(TypedDict, total=False):
    title: str
    doc_type: str
    content: str
    analysis: dict[str, Any]
    asked: int
    result: dict[str, Any]


def grounding_source(state: DocumentState) -> str:
    """What the answer's numbers must come from: the title and the content."""
    return f"{state['title']}\n{state['content']}"


def build(deps: WorkflowDeps) -> StateGraph[DocumentState, RunContext, Any, Any]:
    async def analyse(state: DocumentState, runtime: Runtime[RunContext]) -> DocumentState:
        heading = " - ".join(part for part in (state["title"], state["doc_type"]) if part)
        asked = state.get("asked", 0)
        instruction = prompt_of(runtime, PROMPTS, "analyse") + (STRICTER if asked else "")
        shown = f"{heading}\n\n{state['content']}" if heading else state["content"]
        answer = await deps.llm.structured(
            [("system", instruction), ("user", shown)],
            parameters_of(runtime),
            Analysis,
            # At most 420 characters of words (180 a summary, 80 a point) and a few figures.
            max_tokens=512,
            schema=analysis_schema(grounding_source(state)),
        )
        return {"analysis": msgspec.to_builtins(answer), "asked": asked + 1}

    def structure(state: DocumentState) -> DocumentState:
        analysis = msgspec.convert(state["analysis"], Analysis)
        points = distinct_points(analysis.key_points)
        summary = analysis.summary.strip()
        source = Source.of(grounding_source(state))
        unfounded = [n for text in (summary, *points) for n in unfounded_numbers(text, source)]
        return {
            "result": {
                "title": state["title"],
                "status": "ungrounded" if unfounded else "ok",
                "summary": summary,
                "sentiment": analysis.sentiment,
                "key_points": points,
                "ungrounded": unfounded,
                "word_count": len(state["content"].split()),
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
