"""The Ollama-compatible API (the spec's /generate and Ollama's /api/*) with the real model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient

from tests.llm.conftest import ON_THE_MODULES_LOOP

Client = AsyncTestClient[Any]

# One service for the module (tests/llm/conftest.py, ``shared_llm``): no test here reads what
# only a fresh one holds; each must hold whatever the service answered before.
pytestmark = ON_THE_MODULES_LOOP

GENERATE = {
    "prompt": "What is AI?",
    "stream": False,
    "options": {"temperature": 0, "num_predict": 24},
}


async def test_generate_has_the_spec_shape_with_counts_and_durations(shared_llm: Client) -> None:
    body = (await shared_llm.post("/generate", json={**GENERATE, "model": "llama3.1:8b"})).json()

    assert body["done"] is True
    assert body["response"].strip()
    assert body["model"] == "smollm2-135m-instruct"
    assert body["created_at"].endswith("Z")
    assert body["prompt_eval_count"] > 3
    assert 0 < body["eval_count"] <= 24
    assert body["total_duration"] >= body["eval_duration"] > 0
    assert body["prompt_eval_duration"] > 0


async def test_a_repeated_chat_counts_its_prompt_whole_and_says_what_came_from_the_cache(
    shared_llm: Client,
) -> None:
    """As Ollama does: ``prompt_eval_count`` is the whole prompt, ``prompt_eval_cached_count``
    the part of it taken from the prompt cache (on the stream's last line too)."""
    chat = {
        "messages": [{"role": "user", "content": "Name one risk of holding a bond."}],
        "stream": False,
        "options": {"temperature": 0, "num_predict": 8},
    }
    first = (await shared_llm.post("/api/chat", json=chat)).json()
    second = (await shared_llm.post("/api/chat", json=chat)).json()
    streamed = await shared_llm.post("/api/chat", json={**chat, "stream": True})
    last = json.loads(streamed.text.splitlines()[-1])

    assert first["message"] == second["message"]
    assert first["prompt_eval_count"] == second["prompt_eval_count"] == last["prompt_eval_count"]
    assert 0 < second["prompt_eval_cached_count"] < second["prompt_eval_count"]
    assert 0 < last["prompt_eval_cached_count"] < last["prompt_eval_count"]


async def test_streamed_generate_is_ndjson_that_adds_up(shared_llm: Client) -> None:
    plain = (await shared_llm.post("/generate", json=GENERATE)).json()

    response = await shared_llm.post("/api/generate", json={**GENERATE, "stream": True})

    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["response"] for line in lines) == plain["response"]
    assert lines[-1]["eval_count"] == plain["eval_count"]


async def test_api_generate_streams_by_default_like_ollama(shared_llm: Client) -> None:
    response = await shared_llm.post(
        "/api/generate", json={"prompt": "Hi", "options": {"num_predict": 4}}
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate", {"prompt": "Hi"}),
        ("/api/generate", {"prompt": "Hi"}),
        ("/api/chat", {"messages": [{"role": "user", "content": "Hi"}]}),
    ],
)
async def test_a_streamed_answer_is_in_a_media_type_the_schema_documents(
    shared_llm: Client, path: str, body: dict[str, Any]
) -> None:
    document = (await shared_llm.get("/schema/openapi.json")).json()

    response = await shared_llm.post(
        path, json={**body, "stream": True, "options": {"num_predict": 4}}
    )

    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in document["paths"][path]["post"]["responses"]["200"]["content"]


async def test_api_chat_answers_and_is_deterministic_at_temperature_zero(
    shared_llm: Client,
) -> None:
    request = {
        "model": "anything",
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": False,
        "options": {"temperature": 0, "num_predict": 16},
    }
    first = (await shared_llm.post("/api/chat", json=request)).json()
    second = (await shared_llm.post("/api/chat", json=request)).json()

    assert first["message"]["role"] == "assistant"
    assert first["message"]["content"] == second["message"]["content"]
    assert first["done"] is True
    assert first["done_reason"] in {"stop", "length"}


async def test_format_schema_constrains_the_answer(shared_llm: Client) -> None:
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
    }
    body = (
        await shared_llm.post(
            "/api/chat",
            json={
                "messages": [{"role": "user", "content": "Shares rallied 8% on record profit."}],
                "stream": False,
                "format": schema,
                "options": {"temperature": 0, "num_predict": 40},
            },
        )
    ).json()

    jsonschema.validate(json.loads(body["message"]["content"]), schema)


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
async def test_an_empty_format_is_no_format_as_ollama_reads_it(
    shared_llm: Client, path: str
) -> None:
    """Ollama's server reads ``format: ""`` as not set, and its Python client types it so."""
    asked = {"stream": False, "options": {"temperature": 0, "num_predict": 12}}
    if path == "/api/chat":
        asked["messages"] = [{"role": "user", "content": "Name a stock exchange."}]
    else:
        asked["prompt"] = "Name a stock exchange."
    empty = await shared_llm.post(path, json={**asked, "format": ""})
    unset = await shared_llm.post(path, json=asked)

    assert empty.status_code == 200, empty.text
    field = "message" if path == "/api/chat" else "response"
    assert empty.json()[field] == unset.json()[field]


async def test_tags_and_show_describe_the_model(shared_llm: Client) -> None:
    tags = (await shared_llm.get("/api/tags")).json()
    show = (await shared_llm.post("/api/show", json={"model": "smollm2-135m-instruct"})).json()

    [model] = tags["models"]
    assert model["name"] == "smollm2-135m-instruct"
    assert model["size"] > 10_000_000
    assert model["details"]["quantization_level"] == "Q8_0"  # converted from Q4_1
    assert show["details"]["parameter_size"] == "135M"
    assert show["model_info"]["llama.context_length"] == 1024


async def test_show_refuses_a_bad_body_as_its_schema_documents(shared_llm: Client) -> None:
    document = (await shared_llm.get("/schema/openapi.json")).json()

    response = await shared_llm.post("/api/show", json={"model": 7})

    assert response.status_code == 400
    assert "model" in response.json()["detail"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in document["paths"]["/api/show"]["post"]["responses"]["400"]["content"]


async def test_unsupported_options_are_refused_not_ignored(shared_llm: Client) -> None:
    raw = await shared_llm.post("/generate", json={**GENERATE, "raw": True})
    tools = await shared_llm.post(
        "/api/chat",
        json={"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
    )
    missing = await shared_llm.post("/generate", json={"stream": False})
    # Ollama's images, for a multimodal model: this one reads text only.
    pictured = await shared_llm.post("/api/generate", json={**GENERATE, "images": ["iVBORw0KGgo="]})
    shown = await shared_llm.post(
        "/api/chat",
        json={"messages": [{"role": "user", "content": "What is this?", "images": ["iVBO"]}]},
    )

    middle = await shared_llm.post("/api/generate", json={**GENERATE, "suffix": "return total"})
    templated = await shared_llm.post(
        "/api/generate", json={**GENERATE, "template": "{{ .Prompt }}"}
    )
    thinking = await shared_llm.post(
        "/api/chat", json={"messages": [{"role": "user", "content": "hi"}], "think": True}
    )
    plain = await shared_llm.post("/api/generate", json={**GENERATE, "think": False})

    assert middle.status_code == 400
    assert "suffix: fill-in-the-middle" in middle.json()["detail"]
    assert templated.status_code == 400
    assert "template" in templated.json()["detail"]
    assert thinking.status_code == 400
    assert (
        "think: this service's model answers without a reasoning trace"
        in (thinking.json()["detail"])
    )
    assert plain.status_code == 200
    assert pictured.status_code == 400
    assert "images: this service's model reads text only" in pictured.json()["detail"]
    assert shown.status_code == 400
    assert "messages[0].images" in shown.json()["detail"]
    assert raw.status_code == 400
    assert "raw" in raw.json()["detail"]
    assert tools.status_code == 400
    assert "tools" in tools.json()["detail"]
    assert missing.status_code == 400
    assert "prompt" in missing.json()["detail"]


async def test_logprobs_as_ollama_gives_them_streamed_or_not(shared_llm: Client) -> None:
    """Ollama's ``logprobs`` and ``top_logprobs`` (its 0.12.11 API): the answer's tokens on the
    response, or each line's own on a stream; absent unless asked."""
    request = {
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": False,
        "logprobs": True,
        "top_logprobs": 2,
        "options": {"temperature": 0, "num_predict": 8},
    }
    chat = (await shared_llm.post("/api/chat", json=request)).json()
    streamed = await shared_llm.post("/api/chat", json={**request, "stream": True})
    generated = (await shared_llm.post("/api/generate", json={**GENERATE, "logprobs": True})).json()
    unasked = (await shared_llm.post("/api/generate", json=GENERATE)).json()
    refused = await shared_llm.post("/api/chat", json={**request, "logprobs": False})

    entries = chat["logprobs"]
    assert b"".join(bytes(e["bytes"]) for e in entries) == chat["message"]["content"].encode()
    assert all(len(e["top_logprobs"]) == 2 and e["logprob"] <= 0 for e in entries)
    lines = [json.loads(line) for line in streamed.text.splitlines()]
    carried = [line["logprobs"] for line in lines if "logprobs" in line]
    assert [token for tokens in carried for token in tokens] == entries
    assert len(carried) > 1
    spelled = b"".join(bytes(e["bytes"]) for e in generated["logprobs"])
    assert spelled == generated["response"].encode()
    assert "logprobs" not in unasked
    assert refused.status_code == 400
    assert "top_logprobs" in refused.json()["detail"]


@pytest.mark.parametrize("truncate", [None, True, False])
async def test_a_prompt_longer_than_the_context_is_refused_whatever_truncate_says(
    shared_llm: Client, truncate: bool | None
) -> None:
    """Ollama cuts such a prompt unless ``truncate`` is false; PAS never does (an answer from
    a silently cut document is a wrong answer): a 400 naming the context, which is what
    Ollama's ``truncate: false`` gives and what callers read a document in parts on."""
    said = {} if truncate is None else {"truncate": truncate}
    long = {"messages": [{"role": "user", "content": "revenue " * 3000}], "stream": False}

    refused = await shared_llm.post("/api/chat", json={**long, **said})
    generated = await shared_llm.post(
        "/api/generate", json={"prompt": "revenue " * 3000, "stream": False, **said}
    )

    for answer in (refused, generated):
        assert answer.status_code == 400
        assert "the model's context is 1024" in answer.json()["detail"]
