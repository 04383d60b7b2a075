"""Document analysis: the spec's minimal flow, one LLM step on the event payload, then a
structured result.

``analyse`` asks the model for JSON constrained by :class:`Analysis` (summary, sentiment, key
points); ``structure`` checks and shapes it into the run's output, and judges whether every
number in it is in the document (libs/common/grounding.py). An ungrounded answer is asked for
once more with a stricter instruction; if it stays ungrounded the output says
``status: ungrounded`` and names the numbers, never ``ok``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypedDict

import msgspec
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from libs.common.grounding import Source, unfounded_numbers
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


Point = Annotated[str, msgspec.Meta(min_length=1, max_length=80)]


class Analysis(msgspec.Struct):
    # Every field bounded, so that the grammar-constrained answer closes within max_tokens.
    summary: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    sentiment: Literal["positive", "neutral", "negative"]
    key_points: Annotated[list[Point], msgspec.Meta(min_length=1, max_length=3)]


class DocumentState(TypedDict, total=False):
    title: str
    doc_type: str
    content: str
    analysis: dict[str, Any]
    asked: int
    result: dict[str, Any]


def build(deps: WorkflowDeps) -> StateGraph[DocumentState, RunContext, Any, Any]:
    async def analyse(state: DocumentState, runtime: Runtime[RunContext]) -> DocumentState:
        heading = " - ".join(part for part in (state["title"], state["doc_type"]) if part)
        asked = state.get("asked", 0)
        instruction = prompt_of(runtime, PROMPTS, "analyse") + (STRICTER if asked else "")
        answer = await deps.llm.structured(
            [
                ("system", instruction),
                ("user", f"{heading}\n\n{state['content']}" if heading else state["content"]),
            ],
            parameters_of(runtime),
            Analysis,
            # 440 characters at most; figures cost about a token per two characters.
            max_tokens=400,
        )
        return {"analysis": msgspec.to_builtins(answer), "asked": asked + 1}

    def structure(state: DocumentState) -> DocumentState:
        analysis = msgspec.convert(state["analysis"], Analysis)
        points = [p.strip() for p in analysis.key_points if p.strip()]
        summary = analysis.summary.strip()
        source = Source.of(f"{state['title']}\n{state['content']}")
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
