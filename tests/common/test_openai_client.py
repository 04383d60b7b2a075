"""The shared OpenAI-compatible client: answers, streams, headers and its error taxonomy.

These test the documented OpenAI wire format (chat completions, plain and as server-sent events
with a final usage chunk, and ``/models``) against a local responder,
``tests/support/openai_responder.py``, served over real HTTP: OpenAI itself cannot run here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from libs.common.clients.chat_completions import read_completion
from libs.common.clients.chat_stream import SSEDecoder
from libs.common.clients.llm_errors import (
    LLMRefused,
    LLMTimeout,
    LLMTransientError,
    LLMUnreachable,
    LLMUnusableAnswer,
)
from libs.common.clients.openai_client import OpenAIClient, call_headers, environment_proxy
from libs.common.schemas.usage import HEADER_USAGE_REPORTED_BY
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import ANSWER, OpenAIResponder
from tests.support.processes import free_port

BODY: dict[str, Any] = {
    "model": "fast-model",
    "messages": [{"role": "user", "content": "Price of a 10y bond?"}],
    "max_tokens": 8,
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    """``client_for(url, **options)``: a client on ``url``'s ``/v1``, closed after the test."""
    made: list[OpenAIClient] = []

    def make(url: str, **options: Any) -> OpenAIClient:
        made.append(OpenAIClient(f"{url}/v1", **options))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def responder() -> OpenAIResponder:
    return OpenAIResponder()


@pytest.fixture
def served(responder: OpenAIResponder) -> Iterator[str]:
    with serve_asgi(responder) as url:
        yield url


async def test_an_answer_comes_parsed_with_its_usage_and_the_call_s_headers_go_along(
    client_for: Any, responder: OpenAIResponder, served: str
) -> None:
    client = client_for(served, api_key="sk-test")
    headers = call_headers(
        request_id="req-1",
        usage_reported_by="provider_router",
        trace={"traceparent": TRACEPARENT, "tracestate": "pas=1", "cookie": "not passed on"},
        extra={"X-PAS-Workflow-Id": "document_analysis"},
    )

    answer = await client.complete(BODY, headers=headers)

    assert answer.text == "".join(ANSWER)
    assert answer.finish_reason == "stop"
    assert answer.completion.model == "fast-model"
    assert (answer.completion.usage.prompt_tokens, answer.completion.usage.total_tokens) == (
        11,
        11 + len(ANSWER),
    )
    assert answer.raw_usage == {
        "prompt_tokens": 11,
        "completion_tokens": len(ANSWER),
        "total_tokens": 11 + len(ANSWER),
    }
    assert responder.requests == [BODY]
    sent = responder.headers[0]
    assert sent["authorization"] == "Bearer sk-test"
    assert sent["content-type"] == "application/json"
    assert sent["x-request-id"] == "req-1"
    assert sent[HEADER_USAGE_REPORTED_BY.lower()] == "provider_router"
    assert sent["x-pas-workflow-id"] == "document_analysis"
    assert (sent["traceparent"], sent["tracestate"]) == (TRACEPARENT, "pas=1")
    assert "cookie" not in sent


async def test_no_key_sends_no_authorization(
    client_for: Any, responder: OpenAIResponder, served: str
) -> None:
    await client_for(served).complete(BODY)

    assert "authorization" not in responder.headers[0]


@pytest.mark.parametrize("with_usage", [True, False])
async def test_a_stream_comes_chunk_by_chunk_with_usage_when_the_server_sends_it(
    client_for: Any, with_usage: bool
) -> None:
    responder = OpenAIResponder(stream_usage=with_usage)
    with serve_asgi(responder) as url:
        body = {**BODY, "stream_options": {"include_usage": True}}
        async with await client_for(url).stream(body) as chunks:
            words = [c.delta.content async for chunk in chunks for c in chunk.choices]

    assert words == ANSWER
    assert responder.requests[0]["stream"] is True
    if with_usage:
        assert chunks.usage is not None
        assert chunks.usage.completion_tokens == len(ANSWER)
    else:
        assert chunks.usage is None


async def test_a_stream_that_breaks_midway_is_a_transient_failure(client_for: Any) -> None:
    with serve_asgi(OpenAIResponder(break_stream_after=2)) as url:
        chunks = await client_for(url).stream(BODY)
        words: list[str | None] = []

        async def read_on() -> None:
            async for chunk in chunks:
                words.extend(c.delta.content for c in chunk.choices)

        with pytest.raises(LLMTransientError) as caught:
            await read_on()

    assert words == ANSWER[:2]
    assert caught.value.status_code == 503


async def test_the_model_list_is_read(client_for: Any, served: str) -> None:
    models = await client_for(served).models()

    assert [m.id for m in models.data] == ["fast-model"]


# --- the taxonomy ------------------------------------------------------------------------------


async def test_a_server_that_does_not_answer_in_time_is_a_timeout(client_for: Any) -> None:
    with serve_asgi(OpenAIResponder(delay_s=2.0)) as url, pytest.raises(LLMTimeout) as caught:
        await client_for(url, timeout_s=0.3).complete(BODY)

    assert isinstance(caught.value, LLMTransientError)
    assert caught.value.status_code == 504


async def test_a_stream_that_does_not_start_in_time_is_a_timeout(client_for: Any) -> None:
    with serve_asgi(OpenAIResponder(delay_s=2.0)) as url, pytest.raises(LLMTimeout):
        await client_for(url, timeout_s=0.3).stream(BODY)


async def test_nothing_listening_is_unreachable_and_transient(client_for: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(LLMUnreachable) as caught:
        await client_for(url).complete(BODY)

    assert isinstance(caught.value, LLMTransientError)
    assert caught.value.status_code == 503
    assert url in str(caught.value)
    assert "ClientConnectorError" in str(caught.value)


OPENAI_ERROR = json.dumps(
    {"error": {"message": "context_length_exceeded", "type": "invalid_request_error"}}
).encode()


@pytest.mark.parametrize(
    ("reply", "kind", "status_code"),
    [
        ((429, b'{"error": {"message": "slow down"}}'), LLMTransientError, 503),
        ((500, b"internal error"), LLMTransientError, 503),
        ((503, b"loading model"), LLMTransientError, 503),
        ((400, OPENAI_ERROR), LLMRefused, 502),
        ((404, b'{"error": {"message": "no such model"}}'), LLMRefused, 502),
    ],
)
async def test_an_error_status_is_sorted_and_carries_status_and_body(
    client_for: Any, reply: tuple[int, bytes], kind: type[Exception], status_code: int
) -> None:
    with serve_asgi(OpenAIResponder(reply=reply)) as url:
        client = client_for(url)
        with pytest.raises(kind) as plain:
            await client.complete(BODY)
        with pytest.raises(kind) as streamed:
            await client.stream(BODY)

    for caught in (plain, streamed):
        error = caught.value
        assert isinstance(error, kind)
        assert type(error) is kind  # a status error is neither a timeout nor unreachable
        assert (error.status, error.body) == reply  # type: ignore[attr-defined]
        assert error.status_code == status_code  # type: ignore[attr-defined]
        assert reply[1].decode() in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"<html>Bad gateway</html>",
        b'{"id": "x", "choices": []}',
        b'{"id": "x", "object": "chat.completion", "choices": "none"}',
        b'{"error": {"message": "overloaded"}}',
        # Deeper than the stack: msgspec raises RecursionError, which escaped the client.
        b'{"choices": [{"message": {"content": "hi"}}], "usage": {"x": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}}",
    ],
    ids=["not-json", "no-choices", "wrong-shape", "an-error-with-200", "nested-too-deep"],
)
async def test_a_2xx_that_is_not_a_chat_completion_is_an_unusable_answer(
    client_for: Any, body: bytes
) -> None:
    responder = OpenAIResponder(reply=(200, body))
    with serve_asgi(responder) as url, pytest.raises(LLMUnusableAnswer) as caught:
        await client_for(url).complete(BODY)

    assert caught.value.body == body
    assert caught.value.status_code == 502


@pytest.mark.parametrize(
    "bookkeeping",
    [
        {
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": 3,
                "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": None, "audio_tokens": None},
            }
        },
        {"created": 1733500000.25, "id": None, "model": None},
        {"system_fingerprint": 42},
        {"usage": {"prompt_tokens": None, "completion_tokens": None}},
    ],
    ids=["null-cached-tokens", "float-created-null-ids", "int-fingerprint", "null-counts"],
)
async def test_an_answer_is_kept_whatever_its_bookkeeping_says(
    client_for: Any, bookkeeping: dict[str, Any]
) -> None:
    """Fields no caller reads, as proxies write them (the OpenAI SDK's objects serialized with
    their unset fields as null): a strict read made the answer "not a chat completion", and the
    processor asked the same question again, paid, until it dead-lettered it."""
    body = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Rates rose."},
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        **bookkeeping,
    }
    with serve_asgi(OpenAIResponder(reply=(200, json.dumps(body).encode()))) as url:
        answer = await client_for(url).complete(BODY)

    assert answer.completion.choices[0].message.content == "Rates rose."
    assert answer.completion.usage.prompt_tokens == (body["usage"]["prompt_tokens"] or 0)


NESTED_TOO_DEEP = b"[" * 5000 + b"]" * 5000
"""Deeper than msgspec reads: it raises RecursionError (not DecodeError), which escaped."""


@pytest.mark.parametrize(
    ("event", "why"),
    [
        (b"{not json}", "JSON is malformed"),
        (b'{"id": "x", "choices": [], "extra": ' + NESTED_TOO_DEEP + b"}", "nested too deep"),
    ],
    ids=["not-json", "nested-too-deep"],
)
async def test_a_stream_event_that_is_not_a_chunk_is_an_unusable_answer(
    client_for: Any, event: bytes, why: str
) -> None:
    with serve_asgi(OpenAIResponder(reply=(200, b"data: " + event + b"\n\n"))) as url:
        chunks = await client_for(url).stream(BODY)
        with pytest.raises(LLMUnusableAnswer, match=why) as caught:
            await anext(chunks)

    assert caught.value.body == event


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<html>Bad gateway</html>", "JSON is malformed"),
        (b'{"object": "list", "data": [], "extra": ' + NESTED_TOO_DEEP + b"}", "nested too deep"),
    ],
    ids=["not-json", "nested-too-deep"],
)
async def test_embeddings_or_a_model_list_that_cannot_be_read_are_an_unusable_answer(
    client_for: Any, body: bytes, why: str
) -> None:
    with serve_asgi(OpenAIResponder(reply=(200, body), models_reply=body)) as url:
        client = client_for(url)
        with pytest.raises(LLMUnusableAnswer, match=why) as embedded:
            await client.embed({"model": "fast-model", "input": ["rates"]})
        with pytest.raises(LLMUnusableAnswer, match=why) as listed:
            await client.models()

    assert embedded.value.body == listed.value.body == body


async def test_an_error_event_inside_a_stream_is_transient(client_for: Any) -> None:
    event = b'data: {"error": {"message": "upstream failed mid-stream"}}\n\ndata: [DONE]\n\n'
    with serve_asgi(OpenAIResponder(reply=(200, event))) as url:
        chunks = await client_for(url).stream(BODY)
        with pytest.raises(LLMTransientError, match="upstream failed mid-stream"):
            await anext(chunks)


# --- server-sent events, as the WHATWG rules parse them -----------------------------------------


def _events(*pieces: bytes) -> list[bytes]:
    decoder = SSEDecoder()
    found = [event for piece in pieces for event in decoder.feed(piece)]
    return found + decoder.finish()


def test_events_split_anywhere_come_out_whole() -> None:
    stream = b'data: {"a": 1}\n\ndata: {"b": 2}\n\ndata: [DONE]\n\n'

    assert _events(*(stream[i : i + 1] for i in range(len(stream)))) == [
        b'{"a": 1}',
        b'{"b": 2}',
        b"[DONE]",
    ]


def test_every_line_ending_counts_and_a_crlf_split_across_reads_is_one() -> None:
    assert _events(b"data: one\r", b"\n\r\ndata: two\r\rdata: three\n\n") == [
        b"one",
        b"two",
        b"three",
    ]
    assert _events(b"data: last\r\r") == [b"last"]


def test_data_lines_join_and_comments_and_other_fields_are_skipped() -> None:
    stream = b": keep-alive\nevent: message\nid: 7\ndata: first\ndata:second\nretry: 10\n\n"

    assert _events(stream) == [b"first\nsecond"]


def test_an_event_cut_off_by_the_end_is_dropped() -> None:
    assert _events(b"data: whole\n\ndata: cut") == [b"whole"]


# --- proxies from the environment ------------------------------------------------------------


@pytest.fixture
def proxy_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A clean proxy environment; the proxy look-up is cached per URL, so forgotten around."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    environment_proxy.cache_clear()
    yield monkeypatch
    environment_proxy.cache_clear()


async def test_a_call_goes_through_the_proxy_the_environment_names(
    client_for: Any, responder: OpenAIResponder, served: str, proxy_environment: Any
) -> None:
    """The responder stands in as a forward proxy: a plain-HTTP proxy is sent the request for
    the origin's URL with the origin's Host, which the responder answers as its own."""
    proxy_environment.setenv("HTTP_PROXY", served)
    origin = "http://llm.example.invalid:8000"

    answer = await client_for(origin).complete(BODY)

    assert answer.text == "".join(ANSWER)
    assert responder.headers[-1]["host"] == "llm.example.invalid:8000"


async def test_no_proxy_and_trust_env_off_go_straight_to_the_origin(
    client_for: Any, responder: OpenAIResponder, served: str, proxy_environment: Any
) -> None:
    """With the proxy excluded the origin itself is asked: one that does not resolve is
    unreachable, proving the proxy was not used."""
    proxy_environment.setenv("HTTP_PROXY", served)
    proxy_environment.setenv("NO_PROXY", "llm.example.invalid")

    with pytest.raises(LLMUnreachable):
        await client_for("http://llm.example.invalid:8000").complete(BODY)
    with pytest.raises(LLMUnreachable):
        await client_for("http://other.example.invalid:8000", trust_env=False).complete(BODY)
    assert responder.requests == []


def test_an_answer_s_tool_calls_are_read_and_calls_of_another_shape_left_out() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}

    def answer(calls: object) -> bytes:
        message = {"role": "assistant", "content": None, "tool_calls": calls}
        return json.dumps(
            {"choices": [{"message": message, "finish_reason": "tool_calls"}]}
        ).encode()

    read = read_completion(answer([call]))
    odd = read_completion(answer([{"name": "f"}]))

    [made] = read.completion.choices[0].message.tool_calls or []
    assert (made.id, made.function.name, made.function.arguments) == ("c1", "f", "{}")
    assert read.text == ""
    assert odd.completion.choices[0].message.tool_calls is None
