"""The Ollama-compatible API (the spec's /generate and Ollama's /api/*) with the real model."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from litestar.testing import AsyncTestClient

Client = AsyncTestClient[Any]

GENERATE = {
    "prompt": "What is AI?",
    "stream": False,
    "options": {"temperature": 0, "num_predict": 24},
}


async def test_generate_has_the_spec_shape_with_counts_and_durations(llm: Client) -> None:
    body = (await llm.post("/generate", json={**GENERATE, "model": "llama3.1:8b"})).json()

    assert body["done"] is True
    assert body["response"].strip()
    assert body["model"] == "smollm2-135m-instruct"
    assert body["created_at"].endswith("Z")
    assert body["prompt_eval_count"] > 3
    assert 0 < body["eval_count"] <= 24
    assert body["total_duration"] >= body["eval_duration"] > 0
    assert body["prompt_eval_duration"] > 0


async def test_streamed_generate_is_ndjson_that_adds_up(llm: Client) -> None:
    plain = (await llm.post("/generate", json=GENERATE)).json()

    response = await llm.post("/api/generate", json={**GENERATE, "stream": True})

    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["response"] for line in lines) == plain["response"]
    assert lines[-1]["eval_count"] == plain["eval_count"]


async def test_api_generate_streams_by_default_like_ollama(llm: Client) -> None:
    response = await llm.post("/api/generate", json={"prompt": "Hi", "options": {"num_predict": 4}})
    assert response.headers["content-type"].startswith("application/x-ndjson")


async def test_api_chat_answers_and_is_deterministic_at_temperature_zero(llm: Client) -> None:
    request = {
        "model": "anything",
        "messages": [{"role": "user", "content": "Say hello."}],
        "stream": False,
        "options": {"temperature": 0, "num_predict": 16},
    }
    first = (await llm.post("/api/chat", json=request)).json()
    second = (await llm.post("/api/chat", json=request)).json()

    assert first["message"]["role"] == "assistant"
    assert first["message"]["content"] == second["message"]["content"]
    assert first["done"] is True
    assert first["done_reason"] in {"stop", "length"}


async def test_format_schema_constrains_the_answer(llm: Client) -> None:
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
    }
    body = (
        await llm.post(
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


async def test_tags_and_show_describe_the_model(llm: Client) -> None:
    tags = (await llm.get("/api/tags")).json()
    show = (await llm.post("/api/show", json={"model": "smollm2-135m-instruct"})).json()

    [model] = tags["models"]
    assert model["name"] == "smollm2-135m-instruct"
    assert model["size"] > 10_000_000
    assert model["details"]["quantization_level"] == "Q4_1"
    assert show["details"]["parameter_size"] == "135M"
    assert show["model_info"]["llama.context_length"] == 1024


async def test_unsupported_options_are_refused_not_ignored(llm: Client) -> None:
    raw = await llm.post("/generate", json={**GENERATE, "raw": True})
    tools = await llm.post(
        "/api/chat",
        json={"messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]},
    )
    missing = await llm.post("/generate", json={"stream": False})

    assert raw.status_code == 400
    assert "raw" in raw.json()["detail"]
    assert tools.status_code == 400
    assert "tools" in tools.json()["detail"]
    assert missing.status_code == 400
    assert "prompt" in missing.json()["detail"]
