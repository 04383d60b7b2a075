"""The runner's chat models call tools natively, on both of its APIs (ChatOllama on Ollama's,
its own model on OpenAI's, the provider router's path): ``bind_tools``, ``ToolNode`` and
``tools_condition`` in a LangGraph loop against a PAS LLM service on the embedded model."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from libs.common.clients.openai_client import OpenAIClient
from libs.common.schemas.llm import FunctionCall, ToolCall
from libs.common.schemas.workflows import WorkflowParameters
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.openai_chat import OpenAICompatibleChat, read_tool_calls
from services.langgraph_runner.settings import RunnerSettings
from tests.support.processes import ServiceProcess


@pytest.mark.parametrize("api", ["ollama", "openai"])
async def test_a_tool_loop_runs_the_tool_and_ends_on_either_api(
    api: str, llm_process: ServiceProcess
) -> None:
    url = llm_process.url if api == "ollama" else f"{llm_process.url}/v1"
    gateway = LLMGateway(RunnerSettings(llm_api=api, llm_url=url))  # type: ignore[arg-type]
    asked: list[str] = []

    @tool
    def get_price(ticker: Literal["AAPL", "MSFT"]) -> str:
        """Latest share price of a company, by its ticker."""
        asked.append(ticker)
        return json.dumps({"ticker": ticker, "price": 189.5})

    plain = gateway.chat_model(WorkflowParameters(), 64)
    model = plain.bind_tools([get_price])

    async def agent(state: MessagesState) -> dict[str, list[BaseMessage]]:
        # Once the tool has answered, the model answers from its result, asked without the
        # tools (as tool_choice "none"; Ollama's API has no tool_choice). Left to choose, the
        # 135M model asks the same call again on some CPUs (its greedy pick moves with the
        # arithmetic: without AVX-512 it does), and the loop would run into recursion_limit.
        last = state["messages"][-1]
        chosen = plain if isinstance(last, ToolMessage) else model
        return {"messages": [await chosen.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([get_price]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    try:
        result = await graph.compile().ainvoke(
            {"messages": [HumanMessage("What is Apple's share price?")]}, {"recursion_limit": 8}
        )
    finally:
        await gateway.aclose()

    messages = result["messages"]
    assert asked
    assert set(asked) <= {"AAPL", "MSFT"}
    assert any(isinstance(m, ToolMessage) and m.status == "success" for m in messages)
    final = messages[-1]
    assert isinstance(final, AIMessage)
    assert not final.tool_calls
    assert isinstance(final.content, str)
    assert final.content


async def test_tool_choice_names_the_tool_and_bad_arguments_are_kept_apart(
    llm_process: ServiceProcess,
) -> None:
    gateway = LLMGateway(RunnerSettings(llm_api="openai", llm_url=f"{llm_process.url}/v1"))
    chat = gateway.chat_model(WorkflowParameters(), 64)
    assert isinstance(chat, OpenAICompatibleChat)

    @tool
    def get_volatility(ticker: str, days: int) -> str:
        """Annualised volatility of a ticker over some days."""
        return "0.2"

    @tool
    def get_price(ticker: str) -> str:
        """Latest price of a stock ticker."""
        return "189.5"

    try:
        answer: Any = await chat.bind_tools(
            [get_price, get_volatility], tool_choice="get_volatility"
        ).ainvoke("What is Apple's stock price?")
    finally:
        await gateway.aclose()

    [call] = answer.tool_calls
    assert call["name"] == "get_volatility"
    assert isinstance(call["args"]["days"], int)
    assert not answer.invalid_tool_calls


def test_calls_whose_arguments_do_not_parse_are_kept_apart() -> None:
    good = ToolCall(id="c1", function=FunctionCall(name="f", arguments='{"a": 1}'))
    bad = ToolCall(id="c2", function=FunctionCall(name="f", arguments='{"a": '))

    parsed, invalid = read_tool_calls([good, bad])

    assert parsed == [{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]
    assert [(c["id"], c["args"]) for c in invalid] == [("c2", '{"a": ')]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("any", "required"),
        (True, "required"),
        ("auto", "auto"),
        ("none", "none"),
        (None, None),
        ("get_price", {"type": "function", "function": {"name": "get_price"}}),
    ],
)
def test_tool_choice_is_sent_as_openai_names_it(choice: Any, sent: Any) -> None:
    chat = OpenAICompatibleChat(model="m", client=OpenAIClient("http://127.0.0.1:9/v1"))

    @tool
    def get_price(ticker: str) -> str:
        """Latest price of a stock ticker."""
        return "189.5"

    bound: Any = chat.bind_tools([get_price], tool_choice=choice)

    assert bound.kwargs["tool_choice"] == sent
    assert [t["function"]["name"] for t in bound.kwargs["tools"]] == ["get_price"]
