"""The ollama and openai backends.

Ollama and OpenAI cannot run here, so the first tests use fakes that speak their documented
wire formats (Ollama's /api/chat NDJSON and /api/tags; OpenAI's chat completions, plain and as
server-sent events with a usage chunk). The openai backend is also tested against a real peer:
llama.cpp's OpenAI-compatible server (``python -m llama_cpp.server``) running the same GGUF.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jsonschema
import msgspec
import pytest
from litestar import Litestar, Request, get, post
from litestar.response import Response, Stream
from litestar.testing import AsyncTestClient

from libs.common.text_parts import says_context_overflow
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat
from tests.support.openai_responder import ANSWER, OpenAIResponder
from tests.support.processes import free_port

SCHEMA = {
    "type": "object",
    "properties": {"ticker": {"type": "string"}},
    "required": ["ticker"],
}


def fake_ollama(seen: list[dict[str, Any]]) -> Litestar:
    """Ollama's API as documented: /api/tags, and /api/chat streaming NDJSON by default."""

    @get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {"models": [{"name": "llama3.1:8b", "model": "llama3.1:8b", "size": 1}]}

    @post("/api/chat", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Stream:
        body = await request.json()
        seen.append(body)
        words = ["Bonds ", "pay ", "coupons."]

        def logprobs(word: str) -> dict[str, Any]:
            # Ollama 0.12.11 and later, when asked: the chunk's tokens.
            if not body.get("logprobs"):
                return {}
            top = [{"token": word, "logprob": -0.5, "bytes": list(word.encode())}]
            token = {"token": word, "logprob": -0.5, "bytes": list(word.encode())}
            return {"logprobs": [{**token, "top_logprobs": top[: body.get("top_logprobs", 0)]}]}

        async def lines() -> AsyncIterator[bytes]:
            for word in words:
                yield (
                    json.dumps(
                        {
                            "model": body["model"],
                            "created_at": "2026-11-25T00:00:00Z",
                            "message": {"role": "assistant", "content": word},
                            "done": False,
                            **logprobs(word),
                        }
                    ).encode()
                    + b"\n"
                )
            yield (
                json.dumps(
                    {
                        "model": body["model"],
                        "created_at": "2026-11-25T00:00:00Z",
                        "message": {"role": "assistant", "content": ""},
                        "done": True,
                        "done_reason": "stop",
                        "total_duration": 5_000_000,
                        "load_duration": 1_000,
                        "prompt_eval_count": 12,
                        "prompt_eval_cached_count": 5,
                        "prompt_eval_duration": 1_000_000,
                        "eval_count": 3,
                        "eval_duration": 3_000_000,
                    }
                ).encode()
                + b"\n"
            )

        return Stream(lines(), media_type="application/x-ndjson")

    @post("/api/embed", status_code=200)
    async def embed(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.json()
        seen.append(body)
        return {
            "model": body["model"],
            "embeddings": [[0.6, 0.8], [1.0, 0.0]][: len(body["input"])],
            "total_duration": 2_000_000,
            "load_duration": 0,
            "prompt_eval_count": 7,
        }

    return Litestar([tags, chat, embed])


def fake_openai(seen: list[dict[str, Any]]) -> Litestar:
    """OpenAI's chat completions as documented, including stream_options.include_usage."""

    @get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "gpt-test", "object": "model", "created": 0}]}

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any]:
        body = await request.json()
        seen.append(body)
        usage = {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11}
        if not body.get("stream"):
            return Response(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": '{"ticker": "AAPL"}'},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                }
            )

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            return (
                "data: "
                + json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
                        if delta is not None
                        else [],
                        **extra,
                    }
                )
                + "\n\n"
            )

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""}).encode()
            yield chunk({"content": "Hello"}).encode()
            yield chunk({"content": " desk"}).encode()
            yield chunk({}, "stop").encode()
            yield (
                "data: "
                + json.dumps(
                    {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "created": 0,
                        "model": body["model"],
                        "choices": [],
                        "usage": usage,
                    }
                )
                + "\n\n"
            ).encode()
            yield b"data: [DONE]\n\n"

        return Stream(events(), media_type="text/event-stream")

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> dict[str, Any]:
        body = await request.json()
        seen.append(body)
        vectors = [[0.6, 0.8], [1.0, 0.0]][: len(body["input"])]
        return {
            "object": "list",
            # Listed out of order: the index says which text a vector is.
            "data": [
                {"object": "embedding", "index": index, "embedding": vector}
                for index, vector in reversed(list(enumerate(vectors)))
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": 5, "total_tokens": 5},
        }

    return Litestar([models, chat, embeddings])


async def test_ollama_backend_speaks_ollamas_wire_format(make_llm: Any) -> None:
    seen: list[dict[str, Any]] = []
    with serve_asgi(fake_ollama(seen)) as url:
        pas = await make_llm(backend="ollama", ollama_base_url=url)
        health = (await pas.get("/health")).json()
        answer = await pas.post(
            "/chat/completions",
            json={
                "messages": [{"role": "user", "content": "What is a bond?"}],
                "temperature": 0,
                "max_tokens": 30,
                "seed": 7,
                "top_k": 20,
                "min_p": 0.1,
                "frequency_penalty": 0.5,
                "repeat_penalty": 1.1,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "t", "schema": SCHEMA},
                },
            },
        )
        no_dry = await pas.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "dry_multiplier": 0.8},
        )
        no_bias = await pas.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": "Hi"}], "logit_bias": {"5": 1}},
        )
        with_logprobs = await pas.post(
            "/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Hi"}],
                "logprobs": True,
                "top_logprobs": 1,
            },
        )

    assert health["details"]["model_loaded"] is True
    assert health["details"]["ollama_backend"] == url
    assert answer.json()["choices"][0]["message"]["content"] == "Bonds pay coupons."
    assert answer.json()["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "prompt_tokens_details": {"cached_tokens": 5},
    }
    sent = seen[0]
    assert sent["model"] == "llama3.1:8b"
    assert sent["options"] == {
        "temperature": 0,
        "top_k": 20,
        "min_p": 0.1,
        "num_predict": 30,
        "seed": 7,
        "frequency_penalty": 0.5,
        "repeat_penalty": 1.1,
    }
    assert sent["format"] == SCHEMA
    assert no_dry.status_code == 400
    assert "dry_multiplier: Ollama has no DRY sampler" in no_dry.text
    assert no_bias.status_code == 400
    assert "logit_bias: Ollama has no logit bias" in no_bias.text
    assert "logprobs" not in sent
    assert (seen[1]["logprobs"], seen[1]["top_logprobs"]) == (True, 1)
    tokens = with_logprobs.json()["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in tokens] == ["Bonds ", "pay ", "coupons."]
    assert tokens[0]["top_logprobs"] == [
        {"token": "Bonds ", "logprob": -0.5, "bytes": list(b"Bonds ")}
    ]
    assert answer.json()["choices"][0]["logprobs"] is None
    assert len(seen) == 2  # the DRY and bias requests were refused before Ollama was asked


NESTED_TOO_DEEP = b"[" * 5000 + b"]" * 5000
"""Deeper than msgspec follows (it raises RecursionError, not DecodeError)."""


def ollama_answering(body: bytes) -> Litestar:
    """Ollama's address answering 200 with ``body`` at ``/api/tags``, ``/api/chat`` and
    ``/api/embed``, whatever is asked: a body the backend cannot read as Ollama's format."""

    def answer() -> Response[bytes]:
        return Response(body, media_type="application/json")

    @get("/api/tags")
    async def tags() -> Response[bytes]:
        return answer()

    @post("/api/chat", status_code=200)
    async def chat() -> Response[bytes]:
        return answer()

    @post("/api/embed", status_code=200)
    async def embed() -> Response[bytes]:
        return answer()

    return Litestar([tags, chat, embed])


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"model": "llama3.1:8b", "message": {"role": "assist', "Input data was truncated"),
        (b'{"model": "llama3.1:8b", "extra": ' + NESTED_TOO_DEEP + b"}", "nested too deep to read"),
    ],
    ids=["malformed", "too-deep"],
)
async def test_an_ollama_answer_that_cannot_be_read_is_the_backend_failing(
    make_llm: Any, body: bytes, why: str
) -> None:
    """Ollama's address answers 200 with what is not its wire format (malformed JSON, or JSON
    nested deeper than msgspec reads): the health check says the backend does not answer, and
    a chat or embeddings call is a 503 saying why, as the OpenAI backend reports an unusable
    answer, not a 500."""
    with serve_asgi(ollama_answering(body)) as url:
        pas = await make_llm(backend="ollama", ollama_base_url=url)
        health = (await pas.get("/health")).json()
        chat = await pas.post(
            "/chat/completions", json={"messages": [{"role": "user", "content": "Hi"}]}
        )
        embedded = await pas.post("/api/embed", json={"input": "Bonds"})

    assert health["status"] == "degraded"
    assert f"/api/tags was not understood: {why}" in health["details"]["backend_detail"]
    assert chat.status_code == 503, chat.text
    assert f"answered a chat chunk that cannot be read ({why})" in chat.json()["detail"]
    assert embedded.status_code == 503, embedded.text
    assert f"answered embeddings that cannot be read ({why})" in embedded.json()["detail"]


async def test_a_prompt_longer_than_ollamas_context_is_refused_not_cut(make_llm: Any) -> None:
    """Ollama cuts an over-long prompt and answers 200 unless asked ``truncate: false``; the
    backend asks so, and the service answers 400 with Ollama's words naming the context, on
    which the processor and the runner read a document in parts. (The stand-in treats a long
    prompt as Ollama does: ``tests/support/ollama_chat.py``.)"""
    ollama = OllamaChat(["Revenue rose."], context=50)
    with serve_asgi(ollama) as url:
        pas = await make_llm(backend="ollama", ollama_base_url=url)
        too_long = await pas.post(
            "/chat/completions",
            json={"messages": [{"role": "user", "content": "Revenue rose. " * 40}]},
        )
        fits = await pas.post(
            "/chat/completions", json={"messages": [{"role": "user", "content": "Revenue?"}]}
        )

    assert too_long.status_code == 400
    detail = too_long.json()["detail"]
    assert "exceeds the available context size (50 tokens)" in detail
    assert says_context_overflow(detail)
    assert fits.status_code == 200
    assert fits.json()["choices"][0]["message"]["content"] == "Revenue rose."
    assert ollama.cut == 0
    assert [request["truncate"] for request in ollama.requests] == [False, False]


async def test_openai_backend_speaks_openais_wire_format(make_llm: Any) -> None:
    seen: list[dict[str, Any]] = []
    with serve_asgi(fake_openai(seen)) as url:
        pas = await make_llm(backend="openai", openai_base_url=url)
        plain = (
            await pas.post(
                "/chat/completions",
                json={
                    "messages": [{"role": "user", "content": "Ticker?"}],
                    "logit_bias": {"5": -100},
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "t", "schema": SCHEMA},
                    },
                },
            )
        ).json()
        streamed = await pas.post(
            "/api/chat",
            json={
                "messages": [{"role": "user", "content": "Hi"}],
                "stream": True,
                "options": {"presence_penalty": 0.25, "repeat_last_n": 32, "top_k": 5},
            },
        )

    assert plain["model"] == "gpt-test"
    assert plain["usage"]["total_tokens"] == 11
    assert seen[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": SCHEMA},
    }
    assert "guided_json" not in seen[0]
    assert seen[0]["logit_bias"] == {"5": -100}
    assert seen[1]["stream_options"] == {"include_usage": True}
    # Ollama's option names reach an OpenAI-compatible server as llama.cpp server names them.
    assert (seen[1]["presence_penalty"], seen[1]["repeat_last_n"]) == (0.25, 32)
    assert seen[1]["top_k"] == 5
    assert "frequency_penalty" not in seen[0]
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "Hello desk"
    assert lines[-1]["eval_count"] == 2


async def test_a_stream_without_usage_counts_one_token_a_chunk(make_llm: Any) -> None:
    """Servers that ignore ``stream_options`` send no usage chunk."""
    with serve_asgi(OpenAIResponder(stream_usage=False)) as url:
        pas = await make_llm(backend="openai", openai_base_url=url)
        streamed = await pas.post(
            "/api/chat",
            json={"messages": [{"role": "user", "content": "Hi"}], "stream": True},
        )

    lines = [json.loads(line) for line in streamed.text.splitlines()]
    assert "".join(line["message"]["content"] for line in lines) == "".join(ANSWER)
    assert lines[-1]["eval_count"] == len(ANSWER)
    assert lines[-1].get("prompt_eval_count", 0) == 0  # the prompt stays uncounted


class RefusesJSONSchema(OpenAIResponder):
    """Answers 400 to ``response_format: json_schema``, as servers that know only
    ``json_object`` do (llama-cpp-python's)."""

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        if (request.get("response_format") or {}).get("type") == "json_schema":
            refusal = b'{"error": {"message": "response_format type json_schema is unknown"}}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": refusal})
            return
        await super()._answer(request, send)


async def test_a_server_that_refuses_json_schema_gets_json_object_from_then_on(
    make_llm: Any,
) -> None:
    responder = RefusesJSONSchema()
    structured = {
        "messages": [{"role": "user", "content": "Ticker?"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": SCHEMA}},
    }
    with serve_asgi(responder) as url:
        pas = await make_llm(backend="openai", openai_base_url=url)
        first = await pas.post("/chat/completions", json=structured)
        second = await pas.post("/chat/completions", json={**structured, "stream": True})

    assert (first.status_code, second.status_code) == (200, 200)
    assert [r["response_format"]["type"] for r in responder.requests] == [
        "json_schema",
        "json_object",
        "json_object",
    ]
    assert responder.requests[1]["response_format"]["schema"] == SCHEMA


@pytest.mark.parametrize(("status", "answered"), [(400, 400), (422, 400), (500, 503), (429, 503)])
async def test_an_error_from_the_server_is_answered_with_its_body(
    make_llm: Any, status: int, answered: int
) -> None:
    body = b'{"error": {"message": "context_length_exceeded"}}'
    with serve_asgi(OpenAIResponder(reply=(status, body))) as url:
        pas = await make_llm(backend="openai", openai_base_url=url, model_name="m")
        answer = await pas.post(
            "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
        )

    assert answer.status_code == answered
    assert f"answered {status}" in answer.json()["detail"]
    assert "context_length_exceeded" in answer.json()["detail"]


async def test_an_openai_backend_that_is_down_gives_503_with_the_reason(make_llm: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    pas = await make_llm(backend="openai", openai_base_url=closed, model_name="m")

    answer = await pas.post(
        "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )

    assert answer.status_code == 503
    assert closed in answer.json()["detail"]
    assert "not reachable" in answer.json()["detail"]


async def test_a_backend_that_is_down_gives_503_with_the_reason(make_llm: Any) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    pas = await make_llm(backend="ollama", ollama_base_url=closed)

    health = await pas.get("/health")
    answer = await pas.post(
        "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )

    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert answer.status_code == 503
    assert closed in answer.json()["detail"]
    assert "not reachable" in answer.json()["detail"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a hung backend."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def test_a_slow_backend_gives_504_within_the_timeout(
    make_llm: Any, silent_server: str
) -> None:
    pas = await make_llm(
        backend="openai", openai_base_url=silent_server, model_name="m", timeout_s=1
    )

    answer = await pas.post(
        "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )

    assert answer.status_code == 504
    assert "did not answer within 1s" in answer.json()["detail"]


async def test_openai_backend_against_llama_cpp_server(
    make_llm: Any, llama_cpp_server: str
) -> None:
    pas: AsyncTestClient[Any] = await make_llm(backend="openai", openai_base_url=llama_cpp_server)
    health = (await pas.get("/health")).json()
    chat = {
        "messages": [{"role": "user", "content": "Name a stock exchange."}],
        "temperature": 0,
        "max_tokens": 20,
    }

    plain = (await pas.post("/chat/completions", json=chat)).json()
    streamed = await pas.post("/chat/completions", json={**chat, "stream": True})
    structured = (
        await pas.post(
            "/chat/completions",
            json={
                **chat,
                "max_tokens": 40,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "t", "schema": SCHEMA},
                },
            },
        )
    ).json()

    assert health["details"]["model_loaded"] is True
    assert plain["model"] == "smollm2"
    assert plain["usage"]["completion_tokens"] > 0
    events = [
        msgspec.json.decode(line.removeprefix("data: "))
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
    ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(structured["choices"][0]["message"]["content"]), SCHEMA)
    await asyncio.sleep(0)


async def test_tool_calls_through_llama_cpp_server(make_llm: Any, llama_cpp_server: str) -> None:
    """Tools on a remote model: the `openai` backend sends the tools' prompt and schema as
    structured output (llama.cpp's server without ``--jinja`` has no tool calling of its own),
    and the answer comes back as calls."""
    pas: AsyncTestClient[Any] = await make_llm(backend="openai", openai_base_url=llama_cpp_server)
    parameters = {
        "type": "object",
        "properties": {"ticker": {"type": "string", "enum": ["AAPL", "MSFT"]}},
        "required": ["ticker"],
    }
    tool = {"type": "function", "function": {"name": "get_price", "parameters": parameters}}

    answer = await pas.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "What is Apple's stock price?"}],
            "tools": [tool],
            "tool_choice": "required",
            "temperature": 0,
            "max_tokens": 48,
        },
    )

    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_price"
    jsonschema.validate(json.loads(call["function"]["arguments"]), parameters)


async def test_logprobs_through_llama_cpp_server_match_the_embedded_models(
    make_llm: Any, llama_cpp_server: str
) -> None:
    """The openai backend asks llama.cpp's server for logprobs and passes them on; they are the
    figures the embedded model gives on the same weights and attention (the shipped Q4_1 file,
    unconverted; the server's default, no flash attention), to float32's precision."""
    chat = {
        "messages": [{"role": "user", "content": "Name a stock exchange."}],
        "temperature": 0,
        "max_tokens": 8,
        "logprobs": True,
        "top_logprobs": 2,
    }
    remote: AsyncTestClient[Any] = await make_llm(
        backend="openai", openai_base_url=llama_cpp_server
    )
    served = (await remote.post("/chat/completions", json=chat)).json()["choices"][0]
    streamed = await remote.post("/chat/completions", json={**chat, "stream": True})
    embedded: AsyncTestClient[Any] = await make_llm(convert_weights=False, flash_attention=False)
    own = (await embedded.post("/chat/completions", json=chat)).json()["choices"][0]

    theirs, ours = served["logprobs"]["content"], own["logprobs"]["content"]
    chunks = [
        event["choices"][0]
        for line in streamed.text.splitlines()
        if line.startswith("data: {")
        and (event := msgspec.json.decode(line.removeprefix("data: ")))["choices"]
    ]
    relayed = [t for c in chunks if c["logprobs"] for t in c["logprobs"]["content"]]
    assert relayed == theirs  # each server chunk's tokens with its text
    assert "".join(t["token"] for t in theirs) == served["message"]["content"]
    assert [t["token"] for t in theirs] == [t["token"] for t in ours]
    for their, our in zip(theirs, ours, strict=True):
        assert our["logprob"] == pytest.approx(their["logprob"], abs=1e-4)
        assert [
            (t["token"], pytest.approx(t["logprob"], abs=1e-4)) for t in our["top_logprobs"]
        ] == [(t["token"], t["logprob"]) for t in their["top_logprobs"]]


@pytest.mark.parametrize("backend", ["openai", "ollama"])
async def test_embeddings_are_asked_of_the_backend_in_its_wire_format(
    make_llm: Any, backend: str
) -> None:
    """OpenAI and Ollama played by fakes speaking their documented embeddings formats."""
    seen: list[dict[str, Any]] = []
    fake = fake_openai(seen) if backend == "openai" else fake_ollama(seen)
    with serve_asgi(fake) as url:
        where = {"openai_base_url": url} if backend == "openai" else {"ollama_base_url": url}
        pas = await make_llm(backend=backend, **where)
        openai = await pas.post("/v1/embeddings", json={"input": ["Bonds", "Rates"]})
        ollama = await pas.post("/api/embed", json={"input": "Bonds", "truncate": False})

    assert [item["embedding"] for item in openai.json()["data"]] == [[0.6, 0.8], [1.0, 0.0]]
    assert openai.json()["usage"]["prompt_tokens"] == (5 if backend == "openai" else 7)
    assert ollama.json()["embeddings"] == [[0.6, 0.8]]
    assert seen[0]["input"] == ["Bonds", "Rates"]
    if backend == "ollama":
        assert (seen[0]["truncate"], seen[1]["truncate"]) == (False, False)
