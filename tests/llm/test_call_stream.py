"""Tool calls read as the model writes them (``services/llm/call_stream.py``): however the
answer's text is cut into tokens, each call begins once, named, and its arguments' pieces join
to the JSON value the whole answer holds; text that is not calls in that order begins none.
Then on the embedded model through the OpenAI API: a streamed call's arguments come in
pieces, after a first part with its id and name, as OpenAI streams them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient

from services.llm.call_stream import ArgumentsWritten, CallStarted, CallStream
from tests.llm.conftest import ON_THE_MODULES_LOOP
from tests.llm.test_openai_api import sse_events
from tests.llm.test_tool_calls import ASK

Client = AsyncTestClient[Any]

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ARGUMENTS = st.dictionaries(st.text(), JSON_VALUES, max_size=4)


def streamed(
    pieces: list[str], names: tuple[str, ...] | None = None
) -> tuple[list[CallStarted], dict[int, str]]:
    """The calls begun and each one's arguments joined, the answer growing piece by piece;
    ``names``: of the tools offered (default: those the answer calls)."""
    if names is None:
        answer = json.loads("".join(pieces))
        names = tuple(call["name"] for call in answer["tool_calls"])
    stream, text = CallStream(names), ""
    begun: list[CallStarted] = []
    arguments: dict[int, str] = {}
    for piece in pieces:
        text += piece
        for event in stream.read(text):
            if isinstance(event, CallStarted):
                begun.append(event)
                arguments[event.index] = ""
            else:
                assert isinstance(event, ArgumentsWritten)
                arguments[event.index] += event.text
    return begun, arguments


def cut(text: str, sizes: list[int]) -> list[str]:
    pieces, at = [], 0
    for size in sizes:
        pieces.append(text[at : at + size])
        at += size
    return [*pieces, text[at:]]


@given(
    calls=st.lists(st.tuples(st.text(min_size=1), ARGUMENTS), min_size=1, max_size=3),
    indent=st.sampled_from([None, 1]),
    ascii_only=st.booleans(),
    sizes=st.lists(st.integers(1, 7), max_size=60),
)
def test_calls_written_in_any_pieces_begin_once_and_their_arguments_join_to_theirs(
    calls: list[tuple[str, dict[str, Any]]],
    indent: int | None,
    ascii_only: bool,
    sizes: list[int],
) -> None:
    answer = {"tool_calls": [{"name": name, "arguments": args} for name, args in calls]}
    text = json.dumps(answer, indent=indent, ensure_ascii=ascii_only)

    begun, arguments = streamed(cut(text, sizes))

    assert [(call.index, call.name) for call in begun] == [
        (index, name) for index, (name, _) in enumerate(calls)
    ]
    assert len({call.id for call in begun}) == len(calls)
    for index, (_, args) in enumerate(calls):
        assert json.loads(arguments[index]) == args
        # Blanks between tokens are left out, those in strings kept.
        assert arguments[index] == json.dumps(args, separators=(",", ":"), ensure_ascii=ascii_only)


def test_answers_that_are_not_calls_in_that_order_begin_none() -> None:
    for text in (
        '{"response": "The price is {\\"AAPL\\": 1}"}',
        '{"tool_calls": [{"arguments": {"ticker": "AAPL"}, "name": "get_price"}]}',
        '["tool_calls"]',
        '{"tool_calls": [{"name": "get_price", "arguments": "AAPL"}]}',
        '{"tool_calls": [{"name": "get_prices", "arguments": {}}]}',  # no such tool
    ):
        assert streamed(list(text), ("get_price",)) == ([], {})


def test_a_call_cut_short_has_begun_and_its_arguments_stop_at_the_cut() -> None:
    cut_short = '{"tool_calls": [{"name": "get_price", "arguments": {"tick'
    begun, arguments = streamed(list(cut_short), ("get_price",))

    assert [call.name for call in begun] == ["get_price"]
    assert arguments == {0: '{"tick'}


@ON_THE_MODULES_LOOP
async def test_a_streamed_call_comes_named_first_then_its_arguments_in_pieces(
    shared_llm: Client,
) -> None:
    whole = (await shared_llm.post("/v1/chat/completions", json=ASK)).json()["choices"][0]
    [called] = whole["message"]["tool_calls"]

    response = await shared_llm.post("/v1/chat/completions", json={**ASK, "stream": True})

    chunks = [json.loads(e) for e in sse_events(response.text)[:-1]]
    parts = [p for c in chunks for p in c["choices"][0]["delta"].get("tool_calls") or []]
    first, *rest = parts
    assert first["id"].startswith("call_")
    assert first["type"] == "function"
    assert first["function"] == {"name": called["function"]["name"], "arguments": ""}
    assert len(rest) > 1  # the arguments as they were written, not at the end
    assert all(
        set(p) == {"index", "function"} and set(p["function"]) == {"arguments"} for p in rest
    )
    joined = "".join(p["function"]["arguments"] for p in rest)
    assert json.loads(joined) == json.loads(called["function"]["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@ON_THE_MODULES_LOOP
async def test_a_call_cut_by_max_tokens_ends_where_it_was_cut(shared_llm: Client) -> None:
    """As OpenAI's: the call's parts so far, and ``length``; answered whole, the text cut."""
    body = {**ASK, "tool_choice": "required", "max_tokens": 24}  # cut in the ticker
    whole = (await shared_llm.post("/v1/chat/completions", json=body)).json()["choices"][0]

    response = await shared_llm.post("/v1/chat/completions", json={**body, "stream": True})

    chunks = [json.loads(e) for e in sse_events(response.text)[:-1]]
    parts = [p for c in chunks for p in c["choices"][0]["delta"].get("tool_calls") or []]
    assert whole["finish_reason"] == "length"
    assert whole["message"]["tool_calls"] is None
    assert parts[0]["function"]["name"] in {"get_price", "place_order"}
    joined = "".join(p["function"]["arguments"] for p in parts)
    assert whole["message"]["content"].replace(" ", "").endswith(joined)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
