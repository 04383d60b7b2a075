"""The OpenAI-compatible API with the real embedded model: shapes, usage, determinism,
streaming, structured output and bad input."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient
from llama_cpp import Llama

from services.llm.model_files import packaged_gguf
from tests.llm.conftest import CHAT, ON_THE_MODULES_LOOP
from tests.support.llm_service import token_counts

Client = AsyncTestClient[Any]

# One service for the module (tests/llm/conftest.py, ``shared_llm``): no test here reads what
# only a fresh one holds; each must hold whatever the service answered before.
pytestmark = ON_THE_MODULES_LOOP

PORTFOLIO_SCHEMA = {
    "type": "object",
    "properties": {
        "ticker": {"type": "string", "maxLength": 8},
        "shares": {"type": "integer", "minimum": 0},
        "side": {"type": "string", "enum": ["buy", "sell"]},
    },
    "required": ["ticker", "shares", "side"],
    "additionalProperties": False,
}


def sse_events(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: ")]


async def test_chat_completion_has_the_openai_shape_and_token_usage(shared_llm: Client) -> None:
    response = await shared_llm.post("/chat/completions", json={**CHAT, "max_tokens": 32})

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["id"].startswith("chatcmpl-")
    assert body["model"] == "smollm2-135m-instruct"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in {"stop", "length"}
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 0 < usage["completion_tokens"] <= 32
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_v1_path_and_max_tokens_limit(shared_llm: Client) -> None:
    response = await shared_llm.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3})

    assert response.json()["usage"]["completion_tokens"] <= 3
    assert response.json()["choices"][0]["finish_reason"] == "length"


async def test_temperature_zero_is_deterministic(shared_llm: Client) -> None:
    first = (await shared_llm.post("/chat/completions", json=CHAT)).json()
    second = (await shared_llm.post("/chat/completions", json=CHAT)).json()

    assert first["choices"][0]["message"] == second["choices"][0]["message"]
    assert token_counts(first["usage"]) == token_counts(second["usage"])
    # The repeat took its prompt from the cache but for the rows read last (test_prompt_reuse).
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert 0 < cached < first["usage"]["prompt_tokens"]


async def test_streamed_answer_assembles_to_the_plain_one(shared_llm: Client) -> None:
    plain = (await shared_llm.post("/chat/completions", json=CHAT)).json()

    response = await shared_llm.post(
        "/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )

    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert token_counts(chunks[-1]["usage"]) == token_counts(plain["usage"])
    assert chunks[-2]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions"])
async def test_a_streamed_answer_is_in_a_media_type_the_schema_documents(
    shared_llm: Client, path: str
) -> None:
    document = (await shared_llm.get("/schema/openapi.json")).json()

    response = await shared_llm.post(path, json={**CHAT, "max_tokens": 4, "stream": True})

    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in document["paths"][path]["post"]["responses"]["200"]["content"]


async def _answer_held_to(llm: Client, schema: dict[str, Any], question: str) -> Any:
    """The model's JSON answer to ``question`` under ``schema``, at temperature 0."""
    response = await llm.post(
        "/chat/completions",
        json={
            "messages": [{"role": "user", "content": question}],
            "temperature": 0,
            "max_tokens": 80,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema},
            },
        },
    )
    assert response.status_code == 200, response.text
    return json.loads(response.json()["choices"][0]["message"]["content"])


async def test_json_schema_output_parses_and_validates(shared_llm: Client) -> None:
    order = await _answer_held_to(
        shared_llm, PORTFOLIO_SCHEMA, "Buy 10 shares of Apple. Reply as JSON."
    )

    jsonschema.validate(order, PORTFOLIO_SCHEMA)


async def test_an_enum_of_strings_with_quotes_and_backslashes_is_answered_exactly(
    shared_llm: Client,
) -> None:
    # llama-cpp-python's converter wrote such literals so that llama.cpp refused the grammar,
    # and the service answered 400 to a valid schema.
    quoted = ['the Company (the "Issuer") said', "a path C:\\desk\\orders", 'a \\"mixed\\" one']
    schema = {
        "type": "object",
        "properties": {"quote": {"type": "string", "enum": quoted}},
        "required": ["quote"],
    }

    answer = await _answer_held_to(shared_llm, schema, "Pick a quote. Reply as JSON.")

    assert answer["quote"] in quoted


async def test_a_number_holds_to_its_bounds(shared_llm: Client) -> None:
    """llama-cpp-python's converter reads no bounds of a number: held to this schema without
    them, the model gave its confidence "out of 100" as 100."""
    schema = {
        "type": "object",
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["sentiment", "confidence"],
    }

    answer = await _answer_held_to(
        shared_llm, schema, "How confident are you, out of 100, that Microsoft beats earnings?"
    )

    jsonschema.validate(answer, schema)


async def test_json_object_mode_gives_json(shared_llm: Client) -> None:
    response = await shared_llm.post(
        "/chat/completions",
        json={
            "messages": [
                {
                    "role": "user",
                    # SmolLM2 (Q8_0) nests {"key": "ok", "value": {...}} past any
                    # max_tokens when asked for "a JSON object that has the key ok".
                    "content": 'Reply with the JSON object {"ok": true}.',
                }
            ],
            "temperature": 0,
            "max_tokens": 200,
            "response_format": {"type": "json_object"},
        },
    )

    choice = response.json()["choices"][0]
    assert choice["finish_reason"] == "stop", "the answer was cut: the JSON would be incomplete"
    assert isinstance(json.loads(choice["message"]["content"]), dict)


DRAWN = {**CHAT, "temperature": 1.0, "max_tokens": 16, "seed": 7}


async def _answer(llm: Client, body: dict[str, Any]) -> tuple[list[str], dict[str, int]]:
    """The texts of an answer's choices, in their order, and its usage."""
    response = await llm.post("/chat/completions", json=body)
    assert response.status_code == 200, response.text
    choices = response.json()["choices"]
    assert [choice["index"] for choice in choices] == list(range(len(choices)))
    return [choice["message"]["content"] for choice in choices], response.json()["usage"]


async def test_n_choices_are_each_drawn_with_the_seed_plus_their_index(shared_llm: Client) -> None:
    texts, usage = await _answer(shared_llm, {**DRAWN, "n": 3})

    alone = [await _answer(shared_llm, {**DRAWN, "seed": 7 + index}) for index in range(3)]
    assert texts == [text for (text,), _ in alone]  # batched together, each as it is alone
    assert len(set(texts)) > 1
    assert usage["prompt_tokens"] == alone[0][1]["prompt_tokens"]  # counted once
    assert usage["completion_tokens"] == sum(used["completion_tokens"] for _, used in alone)


async def test_n_greedy_choices_are_the_greedy_answer(shared_llm: Client) -> None:
    greedy = {**CHAT, "temperature": 0, "max_tokens": 16}

    texts, _ = await _answer(shared_llm, {**greedy, "n": 2})

    assert texts == (await _answer(shared_llm, greedy))[0] * 2


@pytest.mark.parametrize("narrowed", [{"top_k": 1}, {"min_p": 1.0}], ids=["top_k", "min_p"])
async def test_a_draw_narrowed_to_the_likeliest_token_is_the_greedy_answer(
    shared_llm: Client, narrowed: dict[str, Any]
) -> None:
    greedy, _ = await _answer(shared_llm, {**DRAWN, "temperature": 0})

    drawn, _ = await _answer(shared_llm, {**DRAWN, **narrowed, "n": 3})

    assert drawn == greedy * 3


def _token_id(text: str) -> int:
    """The id of ``text`` in the embedded model's vocabulary (it must be one token)."""
    vocabulary = Llama(str(packaged_gguf()), vocab_only=True, verbose=False)
    [token] = vocabulary.tokenize(text.encode(), add_bos=False, special=False)
    return token


async def test_logit_bias_forces_a_token_and_bans_the_greedy_one(shared_llm: Client) -> None:
    greedy = {**CHAT, "temperature": 0, "max_tokens": 6, "logprobs": True}
    plain = (await shared_llm.post("/chat/completions", json=greedy)).json()["choices"][0]
    first = _token_id(plain["logprobs"]["content"][0]["token"])
    bond = _token_id(" bond")

    forced, _ = await _answer(
        shared_llm, {**greedy, "max_tokens": 3, "logit_bias": {str(bond): 100}}
    )
    banned = await shared_llm.post(
        "/chat/completions", json={**greedy, "logit_bias": {str(first): -100}}
    )

    assert forced == [" bond" * 3]
    answer = banned.json()["choices"][0]
    assert _token_id(answer["logprobs"]["content"][0]["token"]) != first
    assert answer["message"]["content"] != plain["message"]["content"]


async def test_n_streamed_choices_assemble_to_the_plain_ones(shared_llm: Client) -> None:
    body = {**DRAWN, "n": 2}
    plain = await shared_llm.post("/chat/completions", json=body)

    streamed = await shared_llm.post(
        "/chat/completions",
        json={**body, "stream": True, "stream_options": {"include_usage": True}},
    )

    events = sse_events(streamed.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    texts = ["", ""]
    finishes: list[int] = []
    for chunk in chunks[:-1]:
        [choice] = chunk["choices"]
        texts[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"] is not None:
            finishes.append(choice["index"])
    assert texts == [choice["message"]["content"] for choice in plain.json()["choices"]]
    assert sorted(finishes) == [0, 1]
    assert chunks[-1]["choices"] == []
    assert token_counts(chunks[-1]["usage"]) == token_counts(plain.json()["usage"])


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
"""An image part (OpenAI's shape): the model here reads text only."""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({**CHAT, "n": 17}, "n"),
        ({**CHAT, "n": 0}, "n"),
        ({**CHAT, "max_tokens": 0}, "max_tokens"),
        ({**CHAT, "response_format": {"type": "json_schema"}}, "json_schema"),
        ({**CHAT, "top_logprobs": 2}, "top_logprobs: set logprobs to true"),
        ({**CHAT, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({**CHAT, "logit_bias": {"bond": 5}}, "logit_bias"),
        ({**CHAT, "logit_bias": {"10000000": 5}}, "logit_bias: token 10000000 is not in"),
        ({**CHAT, "logit_bias": {"5": 101}}, "logit_bias"),
        ({**CHAT, "functions": [{"name": "get_price"}]}, "functions, function_call"),
        ({"messages": [{"role": "user", "content": [IMAGE]}]}, "messages[0].content: image_url"),
        ({**CHAT, "modalities": ["text", "audio"]}, "audio, modalities"),
        ({**CHAT, "audio": {"voice": "alloy", "format": "wav"}}, "audio, modalities"),
        ({**CHAT, "web_search_options": {}}, "web_search_options"),
        ({**CHAT, "reasoning_effort": "low"}, "reasoning_effort"),
        ({"messages": [{"role": "user", "content": [{**IMAGE, "type": "audio"}]}]}, "type"),
        (
            {"messages": [{"role": "user", "content": [{**IMAGE, "image_url": {"url": "x"}}]}]},
            "url",
        ),
    ],
)
async def test_bad_requests_are_400_naming_the_field(
    shared_llm: Client, body: dict[str, Any], field: str
) -> None:
    response = await shared_llm.post("/chat/completions", json=body)

    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


async def test_a_prompt_longer_than_the_context_is_a_clear_400(shared_llm: Client) -> None:
    long_text = "The quarterly report shows revenue growth. " * 400

    response = await shared_llm.post(
        "/chat/completions", json={"messages": [{"role": "user", "content": long_text}]}
    )

    assert response.status_code == 400
    assert "context" in response.json()["detail"]
    assert "1024" in response.json()["detail"]


async def test_models_lists_the_served_model(shared_llm: Client) -> None:
    body = (await shared_llm.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["smollm2-135m-instruct"]


def spelled(entries: list[dict[str, Any]]) -> bytes:
    """The answer the tokens of ``logprobs.content`` make, byte by byte."""
    return b"".join(bytes(entry["bytes"]) for entry in entries)


async def test_logprobs_spell_the_answer_and_rank_each_greedy_token_first(
    shared_llm: Client,
) -> None:
    """Temperature 0 picks the likeliest token: each is first among the top logprobs, with the
    same log-probability, and the same request gives the same figures (streamed too, each
    chunk with the tokens of its text)."""
    asked = {**CHAT, "max_tokens": 16, "logprobs": True, "top_logprobs": 3}

    plain = (await shared_llm.post("/chat/completions", json=asked)).json()
    again = (await shared_llm.post("/chat/completions", json=asked)).json()
    streamed = await shared_llm.post("/chat/completions", json={**asked, "stream": True})
    unasked = (await shared_llm.post("/chat/completions", json={**CHAT, "max_tokens": 4})).json()

    choice = plain["choices"][0]
    entries = choice["logprobs"]["content"]
    assert spelled(entries) == choice["message"]["content"].encode()
    for entry in entries:
        top = entry["top_logprobs"]
        assert len(top) == 3
        assert [t["logprob"] for t in top] == sorted((t["logprob"] for t in top), reverse=True)
        assert (top[0]["token"], top[0]["logprob"]) == (entry["token"], entry["logprob"])
        assert entry["logprob"] <= 0
        assert sum(math.exp(t["logprob"]) for t in top) <= 1 + 1e-9
    assert again["choices"][0]["logprobs"] == choice["logprobs"]
    chunks = [json.loads(event)["choices"][0] for event in sse_events(streamed.text)[:-1]]
    carried = [c["logprobs"]["content"] for c in chunks if c["logprobs"]]
    assert [token for tokens in carried for token in tokens] == entries
    assert len(carried) > 1, "each delta carries its own tokens"
    assert unasked["choices"][0]["logprobs"] is None


async def test_logprobs_of_a_structured_answer_and_of_one_cut_at_a_stop_string(
    shared_llm: Client,
) -> None:
    """Under a JSON schema the grammar picks among what it allows, so a token need not be the
    model's likeliest; its log-probability is still the model's. A stop string's tokens go
    with its text."""
    structured = (
        await shared_llm.post(
            "/chat/completions",
            json={
                "messages": [{"role": "user", "content": "Buy 10 AAPL as JSON."}],
                "temperature": 0,
                "max_tokens": 60,
                "logprobs": True,
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "order", "schema": PORTFOLIO_SCHEMA},
                },
            },
        )
    ).json()
    whole = (await shared_llm.post("/chat/completions", json={**CHAT, "max_tokens": 16})).json()
    text = whole["choices"][0]["message"]["content"]
    stop = text[len(text) // 2 :][:3]
    cut = (
        await shared_llm.post(
            "/chat/completions",
            json={**CHAT, "max_tokens": 16, "stop": [stop], "logprobs": True},
        )
    ).json()["choices"][0]

    content = structured["choices"][0]["message"]["content"]
    jsonschema.validate(json.loads(content), PORTFOLIO_SCHEMA)
    entries = structured["choices"][0]["logprobs"]["content"]
    assert spelled(entries) == content.encode()
    assert all(e["logprob"] <= 0 and e["top_logprobs"] == [] for e in entries)
    kept = cut["message"]["content"].encode()
    assert kept == text[: text.index(stop)].encode()
    tokens = cut["logprobs"]["content"]
    assert spelled(tokens).startswith(kept)
    assert len(spelled(tokens)) - len(tokens[-1]["bytes"]) < len(kept)
