"""Tool agent: the model picks tool calls, ``ToolNode`` runs them, ``tools_condition`` routes,
and the model answers from the tools' results.

The tools read the market-data file shipped with PAS: ``price_history(ticker, days)`` and
``return_metrics(ticker, days)`` (total return, annualised volatility, maximum drawdown).
The agent asks for its calls as JSON that a schema confines to the known tools and the
tickers in the data, and turns that JSON into the ``tool_calls`` of an ``AIMessage``: from
there on it is LangGraph's standard ReAct loop. (PAS LLM services answer ``tools`` themselves
too, services/llm/tool_calling.py; asking by schema here runs the same on any server that
takes a JSON schema, Ollama or a vLLM without a tool parser.)
"""

from __future__ import annotations

from typing import Annotated, Any, TypedDict

import msgspec
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.graph import START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.runtime import Runtime

from services.langgraph_runner.market_data import MarketData, UnknownTicker
from services.langgraph_runner.workflows.base import (
    RunContext,
    WorkflowDeps,
    WorkflowSpec,
    parameters_of,
    prompt_of,
)

MAX_CALLS = 3
TOOL_NAMES = ("price_history", "return_metrics")

PROMPTS = {
    "plan": "You answer questions about stock prices with tools. price_history(ticker, days) "
    "gives daily closes; return_metrics(ticker, days) gives total return, annualised "
    "volatility and maximum drawdown. Choose the tool calls that answer the question. Answer "
    "in JSON.",
    "answer": "Answer the question in one to three plain sentences, using only the tool "
    "results given.",
}

_encode = msgspec.json.Encoder().encode


class ToolAgentInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    question: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]


class _Call(msgspec.Struct):
    tool: str
    ticker: str
    days: int


class ToolPlan(msgspec.Struct):
    calls: list[_Call]


class ToolAgentState(TypedDict):
    question: str
    messages: Annotated[list[AnyMessage], add_messages]


def market_tools(market: MarketData) -> list[BaseTool]:
    @tool
    def price_history(ticker: str, days: int) -> str:
        """Daily closing prices of a ticker over the last `days` trading days, oldest first."""
        return _encode(market.history(ticker, days)).decode()

    @tool
    def return_metrics(ticker: str, days: int) -> str:
        """Total return, annualised volatility and maximum drawdown of a ticker over the last
        `days` trading days."""
        return _encode(market.metrics(ticker, days)).decode()

    return [price_history, return_metrics]


def plan_schema(market: MarketData) -> dict[str, Any]:
    """Tool calls as JSON: only known tools and tickers, day counts the data holds."""
    call = {
        "type": "object",
        "properties": {
            "tool": {"type": "string", "enum": list(TOOL_NAMES)},
            "ticker": {"type": "string", "enum": market.tickers},
            "days": {"type": "integer", "minimum": 3, "maximum": market.max_days},
        },
        "required": ["tool", "ticker", "days"],
    }
    return {
        "type": "object",
        "properties": {
            "calls": {"type": "array", "items": call, "minItems": 1, "maxItems": MAX_CALLS}
        },
        "required": ["calls"],
    }


def build(deps: WorkflowDeps) -> StateGraph[ToolAgentState, RunContext, Any, Any]:
    schema = plan_schema(deps.market)

    async def agent(state: ToolAgentState, runtime: Runtime[RunContext]) -> dict[str, Any]:
        results = [m for m in state["messages"] if isinstance(m, ToolMessage)]
        if results:
            evidence = "\n".join(f"{m.name}: {m.content}" for m in results)
            answer = await deps.llm.text(
                [
                    ("system", prompt_of(runtime, PROMPTS, "answer")),
                    ("user", f"Question: {state['question']}\nTool results:\n{evidence}"),
                ],
                parameters_of(runtime),
                max_tokens=120,
            )
            return {"messages": [AIMessage(content=answer)]}
        plan = await deps.llm.structured(
            [
                ("system", prompt_of(runtime, PROMPTS, "plan")),
                (
                    "user",
                    f"Tickers: {', '.join(deps.market.tickers)}\nQuestion: {state['question']}",
                ),
            ],
            parameters_of(runtime),
            ToolPlan,
            max_tokens=120,
            schema=schema,
        )
        calls = [
            {
                "name": call.tool,
                "args": {"ticker": call.ticker, "days": call.days},
                "id": f"call_{index}",
                "type": "tool_call",
            }
            for index, call in enumerate(plan.calls[:MAX_CALLS])
        ]
        return {"messages": [AIMessage(content="", tool_calls=calls)]}

    graph = StateGraph(ToolAgentState, context_schema=RunContext)
    graph.add_node("agent", agent, retry_policy=deps.retry)
    graph.add_node(
        "tools", ToolNode(market_tools(deps.market), handle_tool_errors=(UnknownTicker, ValueError))
    )
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph


def initial_state(ask: ToolAgentInput, _: WorkflowDeps) -> dict[str, Any]:
    return {"question": ask.question, "messages": [HumanMessage(content=ask.question)]}


def output(state: dict[str, Any]) -> dict[str, Any]:
    messages: list[AnyMessage] = state["messages"]
    requested = {
        call["id"]: call for m in messages if isinstance(m, AIMessage) for call in m.tool_calls
    }
    calls = []
    for m in messages:
        if isinstance(m, ToolMessage):
            call: dict[str, Any] = dict(requested.get(m.tool_call_id, {}))
            ok = m.status == "success"
            calls.append(
                {
                    "tool": m.name,
                    "args": call.get("args", {}),
                    "status": m.status,
                    "result": msgspec.json.decode(str(m.content)) if ok else None,
                    "error": None if ok else str(m.content),
                }
            )
    final = messages[-1]
    return {
        "answer": str(final.content) if isinstance(final, AIMessage) else "",
        "tool_calls": calls,
    }


SPEC = WorkflowSpec(
    id="tool_agent",
    title="Market-data tool agent",
    description="The model picks tool calls (price history, return metrics) over the market "
    "data shipped with PAS; ToolNode runs them, tools_condition routes, and the model answers "
    "from the results.",
    input_type=ToolAgentInput,
    build=build,
    initial_state=initial_state,
    output=output,
    prompts=PROMPTS,
)
