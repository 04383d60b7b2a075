"""Tool calling on the embedded model, through OpenAI's chat completions and Ollama's chat: the
answer is a call of a tool that was offered, with arguments valid for its parameters, the same
at temperature 0 streamed or not; a tool's result goes back into the conversation; what cannot
be served is a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from libs.common.schemas.llm import ChatMessage, FunctionCall, ToolCall, ToolDefinition
from services.llm.tool_calling import conversation, response_so_far, tool_use_of
from tests.llm.conftest import ON_THE_MODULES_LOOP
from tests.llm.test_openai_api import sse_events

Client = AsyncTestClient[Any]

PRICE = {
    "type": "function",
    "function": {
        "name": "get_price",
        "description": "Latest price of a stock ticker",
        "parameters": {
            "type": "object",
            "properties": {"ticker": {"type": "string", "enum": ["AAPL", "MSFT", "NVDA"]}},
            "required": ["ticker"],
        },
    },
}
# Pydantic's shape for a nested model: the parameters refer to their own definitions.
ORDER = {
    "type": "function",
    "function": {
        "name": "place_order",
        "description": "Place an order for a stock",
        "parameters": {
            "$defs": {
                "Side": {"type": "string", "enum": ["buy", "sell"]},
                "Leg": {
                    "type": "object",
                    "properties": {
                        "ticker": {"type": "string", "enum": ["AAPL", "MSFT"]},
                        "side": {"$ref": "#/$defs/Side"},
                    },
                    "required": ["ticker", "side"],
                },
            },
            "type": "object",
            "properties": {"leg": {"$ref": "#/$defs/Leg"}},
            "required": ["leg"],
        },
    },
}
TOOLS = [PRICE, ORDER]
ASK = {
    "messages": [{"role": "user", "content": "What is Apple's stock price?"}],
    "tools": TOOLS,
    "temperature": 0,
    "max_tokens": 96,
}


def _parameters(name: str) -> dict[str, Any]:
    return next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == name)  # type: ignore[index]


def _checked_calls(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The message's calls as (name, arguments), each checked against its tool's schema."""
    assert message["content"] is None
    calls = []
    for call in message["tool_calls"]:
        assert call["type"] == "function"
        assert call["id"].startswith("call_")
        arguments = json.loads(call["function"]["arguments"])
        jsonschema.validate(arguments, _parameters(call["function"]["name"]))
        calls.append((call["function"]["name"], arguments))
    return calls


@ON_THE_MODULES_LOOP
async def test_an_answer_with_tools_is_a_valid_call_the_same_each_time(shared_llm: Client) -> None:
    first = (await shared_llm.post("/v1/chat/completions", json=ASK)).json()
    again = (await shared_llm.post("/v1/chat/completions", json=ASK)).json()

    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    calls = _checked_calls(choice["message"])
    assert len(calls) == 1  # one call a turn unless parallel_tool_calls
    assert _checked_calls(again["choices"][0]["message"]) == calls


@ON_THE_MODULES_LOOP
async def test_a_named_tool_choice_calls_that_tool_with_its_nested_parameters(
    shared_llm: Client,
) -> None:
    body = {**ASK, "tool_choice": {"type": "function", "function": {"name": "place_order"}}}

    response = await shared_llm.post("/v1/chat/completions", json=body)

    assert response.status_code == 200
    [(name, arguments)] = _checked_calls(response.json()["choices"][0]["message"])
    assert name == "place_order"
    assert arguments["leg"]["side"] in {"buy", "sell"}


@ON_THE_MODULES_LOOP
async def test_an_integer_argument_holds_to_its_bounds(shared_llm: Client) -> None:
    """llama-cpp-python's converter reads no bounds: held to this schema without them, the
    model asked for 1000 days."""
    days = {"type": "integer", "minimum": 1, "maximum": 365}
    volatility = {
        "type": "function",
        "function": {
            "name": "get_volatility",
            "description": "Annualised volatility of a ticker over some days",
            "parameters": {
                "type": "object",
                "properties": {
                    "ticker": {"type": "string", "enum": ["AAPL", "MSFT"]},
                    "days": days,
                },
                "required": ["ticker", "days"],
            },
        },
    }
    body = {
        **ASK,
        "messages": [{"role": "user", "content": "Volatility of Apple over the last 1000 days?"}],
        "tools": [volatility],
        "tool_choice": "required",
    }

    response = await shared_llm.post("/v1/chat/completions", json=body)

    [call] = response.json()["choices"][0]["message"]["tool_calls"]
    assert 1 <= json.loads(call["function"]["arguments"])["days"] <= 365


@ON_THE_MODULES_LOOP
async def test_tool_choice_none_answers_in_text(shared_llm: Client) -> None:
    response = await shared_llm.post("/v1/chat/completions", json={**ASK, "tool_choice": "none"})

    message = response.json()["choices"][0]["message"]
    assert message["tool_calls"] is None
    assert message["content"].strip()
    assert response.json()["choices"][0]["finish_reason"] in {"stop", "length"}


@ON_THE_MODULES_LOOP
async def test_a_streamed_call_is_the_call_answered_whole(shared_llm: Client) -> None:
    whole = (await shared_llm.post("/v1/chat/completions", json=ASK)).json()["choices"][0]

    response = await shared_llm.post("/v1/chat/completions", json={**ASK, "stream": True})

    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    joined: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for part in chunk["choices"][0]["delta"].get("tool_calls") or []:
            call = joined.setdefault(part["index"], {"name": "", "arguments": ""})
            call["name"] += part["function"].get("name") or ""
            call["arguments"] += part["function"].get("arguments") or ""
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert not "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert [(c["name"], json.loads(c["arguments"])) for c in joined.values()] == [
        (c["function"]["name"], json.loads(c["function"]["arguments"]))
        for c in whole["message"]["tool_calls"]
    ]


@ON_THE_MODULES_LOOP
async def test_each_of_n_choices_is_a_call_streamed_or_not(shared_llm: Client) -> None:
    drawn = {**ASK, "tool_choice": "required", "n": 2, "temperature": 1.0, "seed": 5}

    whole = (await shared_llm.post("/v1/chat/completions", json=drawn)).json()["choices"]
    streamed = await shared_llm.post("/v1/chat/completions", json={**drawn, "stream": True})

    calls = [_checked_calls(choice["message"]) for choice in whole]
    assert [choice["finish_reason"] for choice in whole] == ["tool_calls", "tool_calls"]
    chunks = [json.loads(e) for e in sse_events(streamed.text)[:-1]]
    # A call's parts, joined by its choice and its index (its name comes in its first).
    joined: dict[tuple[int, int], dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for part in choice["delta"].get("tool_calls") or []:
                call = joined.setdefault((choice["index"], part["index"]), {"arguments": ""})
                call.setdefault("name", part["function"].get("name"))
                call["arguments"] += part["function"].get("arguments") or ""
    streamed_calls = [
        [
            (call["name"], json.loads(call["arguments"]))
            for (index, _), call in sorted(joined.items())
            if index == choice
        ]
        for choice in (0, 1)
    ]
    assert streamed_calls == calls


@ON_THE_MODULES_LOOP
async def test_a_conversation_with_a_tool_result_is_answered(shared_llm: Client) -> None:
    messages = [
        {"role": "user", "content": "What is Apple's stock price?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_price", "arguments": '{"ticker": "AAPL"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"price": 189.5}'},
    ]
    alone = await shared_llm.post("/v1/chat/completions", json={**ASK, "messages": messages[:1]})

    response = await shared_llm.post("/v1/chat/completions", json={**ASK, "messages": messages})

    assert response.status_code == 200
    answer = response.json()
    # The call and its result are in the prompt the model read.
    assert answer["usage"]["prompt_tokens"] > alone.json()["usage"]["prompt_tokens"] + 20
    message = answer["choices"][0]["message"]
    if message["tool_calls"] is None:
        assert message["content"].strip()
    else:
        _checked_calls(message)


def test_earlier_calls_and_results_are_turns_any_template_reads() -> None:
    messages = [
        ChatMessage(role="user", content="Price of Apple?"),
        ChatMessage(
            role="assistant",
            tool_calls=[
                ToolCall(
                    id="c1", function=FunctionCall(name="get_price", arguments='{"ticker":"AAPL"}')
                )
            ],
        ),
        ChatMessage(role="tool", tool_call_id="c1", content='{"price": 189.5}'),
    ]

    turns = conversation(messages)

    assert [t.role for t in turns] == ["user", "assistant", "user"]
    assert json.loads(turns[1].content) == {
        "tool_calls": [{"name": "get_price", "arguments": {"ticker": "AAPL"}}]
    }
    assert turns[2].content == 'Result of get_price: {"price": 189.5}'


def test_a_result_that_names_no_call_answers_the_next_one_unanswered() -> None:
    """The ``ollama`` client (and so ChatOllama) drops ``tool_call_id``; Ollama matches results
    to calls by order."""
    calls = [
        ToolCall(id=f"c{n}", function=FunctionCall(name=name, arguments="{}"))
        for n, name in enumerate(["get_price", "get_news"])
    ]
    messages = [
        ChatMessage(role="user", content="Apple?"),
        ChatMessage(role="assistant", tool_calls=calls),
        ChatMessage(role="tool", content="189.5"),
        ChatMessage(role="tool", content="New iPhone"),
    ]

    turns = conversation(messages)

    assert [t.content for t in turns[2:]] == [
        "Result of get_price: 189.5",
        "Result of get_news: New iPhone",
    ]


def test_the_answer_schema_admits_only_the_offered_tools() -> None:
    tools = msgspec.convert(TOOLS, list[ToolDefinition])
    use = tool_use_of(tools, "auto", parallel=True)
    assert use is not None
    schema = use.schema(None)
    call = {"name": "get_price", "arguments": {"ticker": "AAPL"}}

    jsonschema.validate({"tool_calls": [call, call]}, schema)  # parallel: several
    jsonschema.validate({"response": "It is 189.5."}, schema)
    wrongs: list[dict[str, Any]] = [
        {"tool_calls": [{"name": "delete_all", "arguments": {}}]},
        {"tool_calls": [{"name": "get_price", "arguments": {"ticker": "TSLA"}}]},
        {"tool_calls": [{"name": "place_order", "arguments": {"leg": {"ticker": "AAPL"}}}]},
        {"tool_calls": []},
    ]
    for wrong in wrongs:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, schema)
    single = tool_use_of(tools, "required", parallel=False)
    assert single is not None
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"tool_calls": [call, call]}, single.schema(None))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"response": "no"}, single.schema(None))


@given(
    said=st.text(),
    ascii_only=st.booleans(),
    spaces=st.sampled_from(["", " ", "\n  "]),
)
def test_a_text_response_streams_as_prefixes_of_what_it_says(
    said: str, ascii_only: bool, spaces: str
) -> None:
    """Each cut of ``{"response": "..."}`` reads as a prefix of the text it says, escapes cut
    in the middle (``\\u00e9``, a surrogate pair's halves) left out until whole."""
    written = (
        f'{{{spaces}"response"{spaces}:{spaces}'
        f"{json.dumps(said, ensure_ascii=ascii_only)}{spaces}}}"
    )

    assert response_so_far(written) == said
    for cut in range(len(written)):
        so_far = response_so_far(written[:cut])
        assert so_far is None or said.startswith(so_far)


NESTED_TOO_DEEP = "[" * 5000 + "]" * 5000
"""Deeper than msgspec reads: it raises RecursionError, not DecodeError."""


def test_an_answer_nested_too_deep_is_not_the_json_asked_for() -> None:
    """A model that answers bracket after bracket: given as it is, as an answer cut short is,
    not a RecursionError out of the request."""
    use = tool_use_of(msgspec.convert(TOOLS, list[ToolDefinition]), "auto", parallel=True)
    assert use is not None
    answer = '{"tool_calls": [{"name": "get_price", "arguments": ' + NESTED_TOO_DEEP + "}]}"

    assert use.read(answer) is None


def test_calls_are_not_read_as_a_text_response() -> None:
    assert response_so_far('{"tool_calls": [{"name": "get_price"') is None
    assert response_so_far('{"response": {"ticker": "AAPL"') is None  # a format of its own


@ON_THE_MODULES_LOOP
async def test_a_streamed_text_answer_comes_as_text_as_it_is_made(shared_llm: Client) -> None:
    haiku = [{"role": "user", "content": "Write a haiku about the sea."}]
    body = {**ASK, "messages": haiku, "max_tokens": 48}
    whole = (await shared_llm.post("/v1/chat/completions", json=body)).json()["choices"][0]
    assert whole["message"]["tool_calls"] is None  # the model answers this one in text

    response = await shared_llm.post("/v1/chat/completions", json={**body, "stream": True})

    chunks = [json.loads(e) for e in sse_events(response.text)[:-1]]
    texts = [c["choices"][0]["delta"].get("content") for c in chunks]
    parts = [t for t in texts if t]
    assert len(parts) > 1  # sent as it came, not at the end
    assert "".join(parts) == whole["message"]["content"]
    assert not any(c["choices"][0]["delta"].get("tool_calls") for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["finish_reason"]


@ON_THE_MODULES_LOOP
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "sell_all"}}}, "tool_choice"),
        ({"tools": [PRICE, PRICE]}, "tools"),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "tools"),
        ({"tools": [{"type": "function"}]}, "tools[0].function: field required"),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "tools[0].function.name",
        ),
        (
            {
                "tools": [
                    {"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}
                ]
            },
            "tools[0].function.parameters",
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "get_price", "arguments": "{ticker"},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (  # deeper than msgspec reads: its RecursionError was a 500
            {
                "messages": [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "get_price", "arguments": NESTED_TOO_DEEP},
                            }
                        ],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments: not JSON (nested too deep to read)",
        ),
    ],
)
async def test_tools_that_cannot_be_served_are_a_400_naming_the_field(
    shared_llm: Client, change: dict[str, Any], named: str
) -> None:
    response = await shared_llm.post("/v1/chat/completions", json={**ASK, **change})

    assert response.status_code == 400
    assert named in response.text


@ON_THE_MODULES_LOOP
async def test_ollama_chat_calls_tools_in_its_own_shape(shared_llm: Client) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "messages": ASK["messages"],
        "tools": TOOLS,
        "options": {"temperature": 0},
    }

    plain = await shared_llm.post("/api/chat", json={**body, "stream": False})
    streamed = await shared_llm.post("/api/chat", json=body)

    message = plain.json()["message"]
    [call] = message["tool_calls"]
    jsonschema.validate(call["function"]["arguments"], _parameters(call["function"]["name"]))
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert lines[-1]["done"] is True
    assert [c for line in lines for c in line["message"]["tool_calls"] or []] == [call]
    assert not "".join(line["message"]["content"] for line in lines)
    haiku = {**body, "messages": [{"role": "user", "content": "Write a haiku about the sea."}]}
    said = (await shared_llm.post("/api/chat", json={**haiku, "stream": False})).json()["message"]
    streamed_text = (await shared_llm.post("/api/chat", json=haiku)).text
    said_lines = [json.loads(line) for line in streamed_text.splitlines()]
    assert said["tool_calls"] is None
    assert len([line for line in said_lines if line["message"]["content"]]) > 1
    assert "".join(line["message"]["content"] for line in said_lines) == said["content"]
    follow = await shared_llm.post(
        "/api/chat",
        json={
            **body,
            "stream": False,
            "messages": [
                *ASK["messages"],  # type: ignore[misc]
                message,
                {"role": "tool", "tool_name": "get_price", "content": '{"price": 189.5}'},
            ],
        },
    )
    assert follow.status_code == 200
    assert follow.json()["done"] is True
