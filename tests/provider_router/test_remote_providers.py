"""Remote providers from the config file: prices, budgets, keys, wire formats.

The OpenAI-compatible provider is llama.cpp's real server (``python -m llama_cpp.server``) on
the GGUF PAS ships. OpenAI and Anthropic cannot be reached from here: they are played by fakes
that speak their documented wire formats (OpenAI chat completions; Anthropic's Messages API,
plain and streamed), and the tests say which.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar import Litestar, Request, post
from litestar.response import Stream

from libs.common.errors import SettingsError
from libs.common.schemas.llm import ModelList
from services.provider_router.candidates import remote_candidates
from tests.provider_router.conftest import ask, providers_file, wait_for_candidates
from tests.support.asgi_server import serve_asgi
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder
from tests.support.usage_topic import usage_events


async def test_cost_picks_local_and_remote_serves_when_asked_by_model(
    make_router: Any,
    start_llm: Any,
    llama_cpp_server: str,
    tmp_path: Path,
) -> None:
    start_llm("llama31_8b")
    config = providers_file(
        tmp_path,
        f"""
[[providers]]
name = "vllm"
base_url = "{llama_cpp_server}/v1"
[[providers.models]]
name = "smollm2"
capabilities = ["reasoning"]
input_per_1k = 0.5
output_per_1k = 1.5
""",
    )
    router = await make_router(providers_file=config)
    await wait_for_candidates(router, {"local/llm_llama31_8b", "vllm/smollm2"})

    cheapest = (
        await router.post(
            "/route", json={"capability": "reasoning", "strategy": "cost", "prefer_local": False}
        )
    ).json()
    remote = await router.post(
        "/v1/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6},
    )
    costs = (await router.get("/costs")).json()
    listed = msgspec.convert((await router.get("/v1/models")).json(), ModelList)

    assert cheapest["provider"] == "local"
    # OpenAI's model list (what OpenAI clients and the shared client read), a model once.
    owners = {card.id: card.owned_by for card in listed.data}
    assert owners["smollm2"] == "vllm"
    assert "local" in owners.values()
    assert [f["candidate_id"] for f in cheapest["fallbacks"]] == ["vllm/smollm2"]
    assert remote.status_code == 200
    assert remote.headers["x-pas-provider"] == "vllm"
    usage = remote.json()["usage"]
    expected = (usage["prompt_tokens"] * 0.5 + usage["completion_tokens"] * 1.5) / 1000
    assert abs(costs["by_provider"]["vllm"]["cost_usd"] - expected) < 1e-9


async def test_a_provider_without_its_key_is_listed_unavailable(
    make_router: Any, tmp_path: Path
) -> None:
    config = providers_file(
        tmp_path,
        """
[[providers]]
name = "openai"
base_url = "https://api.invalid/v1"
api_key_env = "PAS_TEST_KEY_THAT_IS_NOT_SET"
[[providers.models]]
name = "gpt-4o-mini"
capabilities = ["reasoning"]
input_per_1k = 0.00015
output_per_1k = 0.0006
""",
    )
    router = await make_router(use_registry=False, providers_file=config)

    [row] = (await router.get("/providers")).json()["candidates"]
    route = await router.post("/route", json={"capability": "reasoning"})

    assert row["available"] is False
    assert row["unavailable_reason"] == "no API key: set PAS_TEST_KEY_THAT_IS_NOT_SET"
    assert route.status_code == 503
    assert "no API key" in route.json()["detail"]


async def test_daily_budget_skips_a_provider_once_spent(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """OpenAI played by a fake speaking its chat-completions wire format."""
    responder = OpenAIResponder("gpt-fake")
    monkeypatch.setenv("PAS_TEST_OPENAI_KEY", "sk-test")
    with serve_asgi(responder) as url:
        config = providers_file(
            tmp_path,
            f"""
[[providers]]
name = "openai"
base_url = "{url}/v1"
api_key_env = "PAS_TEST_OPENAI_KEY"
daily_budget_usd = 0.01
[[providers.models]]
name = "gpt-fake"
capabilities = ["summarize"]
input_per_1k = 1.0
output_per_1k = 1.0
""",
        )
        router = await make_router(use_registry=False, providers_file=config)
        first = await router.post("/v1/chat/completions", json=ask("summarize"))
        second = await router.post("/v1/chat/completions", json=ask("summarize"))
        [row] = (await router.get("/providers")).json()["candidates"]

    assert first.status_code == 200
    assert responder.requests[0]["model"] == "gpt-fake"
    assert "capability" not in responder.requests[0]
    assert row["spent_today_usd"] == 0.016  # (11 + 5) tokens at 1 USD per 1k
    assert second.status_code == 503
    assert "daily budget spent" in second.json()["detail"]


async def test_prompt_tokens_from_the_providers_cache_cost_its_cached_price(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """OpenAI played by a fake speaking its chat-completions wire format, whose usage says 8 of
    the 11 prompt tokens came from its prompt cache; plain and streamed alike. A part marked
    for Anthropic's cache reaches it without the mark (OpenAI refuses fields it does not
    know)."""
    monkeypatch.setenv("PAS_TEST_OPENAI_KEY", "sk-test")
    responder = OpenAIResponder("gpt-fake", cached_tokens=8)
    with serve_asgi(responder) as url:
        config = providers_file(
            tmp_path,
            f"""
[[providers]]
name = "openai"
base_url = "{url}/v1"
api_key_env = "PAS_TEST_OPENAI_KEY"
[[providers.models]]
name = "gpt-fake"
capabilities = ["summarize"]
input_per_1k = 1.0
cached_input_per_1k = 0.1
output_per_1k = 2.0
""",
        )
        router = await make_router(use_registry=False, providers_file=config)
        plain = await router.post("/v1/chat/completions", json=ask("summarize"))
        streamed = await router.post("/v1/chat/completions", json=ask("summarize", stream=True))
        costs = (await router.get("/costs")).json()
        part = {"type": "text", "text": "Is a bond a loan?", "cache_control": {"type": "ephemeral"}}
        marked = ask("summarize", messages=[{"role": "user", "content": [part]}])
        assert (await router.post("/v1/chat/completions", json=marked)).status_code == 200

    assert plain.json()["usage"]["prompt_tokens_details"] == {"cached_tokens": 8}
    # The Anthropic cache mark on a part is not OpenAI's: it is not sent there.
    assert responder.requests[-1]["messages"][0]["content"] == [
        {"type": "text", "text": "Is a bond a loan?"}
    ]
    assert streamed.status_code == 200
    one_call = (3 * 1.0 + 8 * 0.1 + 5 * 2.0) / 1000  # 3 read, 8 cached, 5 answered
    assert costs["by_provider"]["openai"]["requests"] == 2
    assert abs(costs["by_provider"]["openai"]["cost_usd"] - 2 * one_call) < 1e-12


async def test_stream_fails_over_before_the_first_chunk_and_reports_a_later_break(
    make_router: Any, register_agent: Any
) -> None:
    broken_early = OpenAIResponder("early", break_stream_after=0)
    broken_late = OpenAIResponder("late", break_stream_after=2)
    with serve_asgi(broken_early) as early_url, serve_asgi(broken_late) as late_url:
        register_agent("early_llm", early_url, ["extract"], "early")
        router = await make_router()
        await wait_for_candidates(router, {"local/early_llm"})
        register_agent("late_llm", late_url, ["extract"], "late")
        await wait_for_candidates(router, {"local/early_llm", "local/late_llm"})

        streamed = await router.post(
            "/v1/chat/completions", json=ask("extract", stream=True, strategy="cost")
        )

    lines = sse_data(streamed)
    assert streamed.status_code == 200
    assert streamed.headers["x-pas-candidate"] == "local/late_llm"
    assert lines[-1] == "[DONE]"
    error = json.loads(lines[-2])["error"]
    assert "failed mid-stream" in error["message"]
    text = "".join(
        json.loads(line)["choices"][0]["delta"].get("content", "") for line in lines[:-2]
    )
    assert text == "Rates and "


def fake_anthropic(seen: list[dict[str, Any]]) -> Litestar:
    """Anthropic's Messages API as documented: POST /v1/messages, plain and SSE events."""

    @post("/v1/messages", status_code=200)
    async def messages(request: Request[Any, Any, Any]) -> Any:
        body = await request.json()
        seen.append(
            {
                "body": body,
                "key": request.headers.get("x-api-key"),
                "version": request.headers.get("anthropic-version"),
            }
        )
        if body.get("tools"):
            return _tool_use_answer(body)
        if not body.get("stream"):
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [{"type": "text", "text": "Coupons are interest."}],
                "stop_reason": "end_turn",
                "usage": {
                    "input_tokens": 14,
                    "cache_read_input_tokens": 10,
                    "cache_creation_input_tokens": 2,
                    "output_tokens": 4,
                },
            }

        async def events() -> AsyncIterator[bytes]:
            sequence = [
                (
                    "message_start",
                    {
                        "type": "message_start",
                        "message": {
                            "id": "msg_1",
                            "model": body["model"],
                            "usage": {
                                "input_tokens": 14,
                                "cache_read_input_tokens": 10,
                                "cache_creation_input_tokens": 2,
                                "output_tokens": 0,
                            },
                        },
                    },
                ),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "Coupons "},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": "are interest."},
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn"},
                        "usage": {"output_tokens": 4},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
            for name, data in sequence:
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        return Stream(events(), media_type="text/event-stream")

    return Litestar([messages])


def _tool_use_answer(body: dict[str, Any]) -> Any:
    """A text block, then a call of the first tool with ``{"ticker": "AAPL"}``, as Anthropic
    answers it plain and streamed (its arguments in two ``input_json_delta`` pieces)."""
    tool = body["tools"][0]["name"]
    usage = {"input_tokens": 30, "output_tokens": 12}
    if not body.get("stream"):
        return {
            "id": "msg_2",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [
                {"type": "text", "text": "Looking it up."},
                {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"ticker": "AAPL"}},
            ],
            "stop_reason": "tool_use",
            "usage": usage,
        }
    start = {"type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}
    sequence: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {"id": "msg_2", "model": body["model"], "usage": usage},
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Looking it up."},
        },
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": start},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"ticker"'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ': "AAPL"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 12},
        },
        {"type": "message_stop"},
    ]

    async def events() -> AsyncIterator[bytes]:
        for event in sequence:
            yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

    return Stream(events(), media_type="text/event-stream")


async def _router_to_anthropic(
    make_router: Any,
    tmp_path: Path,
    url: str,
    provider: str = "",
    model: str = "",
    **settings: Any,
) -> Any:
    """A router whose one candidate is Anthropic at ``url``; ``provider`` and ``model`` are
    more lines of the providers file's entries, ``settings`` the router's others."""
    config = providers_file(
        tmp_path,
        f"""
[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{url}"
api_key_env = "PAS_TEST_ANTHROPIC_KEY"
{provider}
[[providers.models]]
name = "claude-sonnet-4-5"
capabilities = ["reasoning"]
input_per_1k = 0.003
output_per_1k = 0.015
{model}
""",
    )
    return await make_router(use_registry=False, providers_file=config, **settings)


async def plain_and_streamed(
    make_router: Any, tmp_path: Path, body: dict[str, Any], seen: list[dict[str, Any]]
) -> tuple[Any, Any]:
    """``body`` asked of a router whose one candidate is the fake Anthropic (recording what it
    is sent in ``seen``), plain, then streamed with the usage asked for (its last chunk)."""
    with serve_asgi(fake_anthropic(seen)) as url:
        router = await _router_to_anthropic(make_router, tmp_path, url)
        plain = await router.post("/v1/chat/completions", json=body)
        usage = {"include_usage": True}
        streamed = await router.post(
            "/v1/chat/completions", json={**body, "stream": True, "stream_options": usage}
        )
    return plain, streamed


def sse_data(response: Any) -> list[str]:
    """The ``data:`` payloads of a streamed answer, ``[DONE]`` included."""
    return [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]


async def test_anthropic_is_not_asked_for_what_its_api_cannot_do(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format, which has no
    ``n``, no log-probabilities, no embeddings, no temperature above 1 (OpenAI's goes to 2),
    and answers in JSON only as a tool's input (an object): no such request is sent there as
    something else, and none counts as a failure of Anthropic's."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    with serve_asgi(fake_anthropic(seen)) as url:
        router = await _router_to_anthropic(make_router, tmp_path, url)
        body = {"capability": "reasoning", "messages": [{"role": "user", "content": "Hi"}]}
        response = await router.post("/v1/chat/completions", json={**body, "n": 2})
        scored = await router.post("/v1/chat/completions", json={**body, "logprobs": True})
        heated = await router.post("/v1/chat/completions", json={**body, "temperature": 1.5})
        unparsed_call = {
            "id": "c1",
            "type": "function",
            "function": {"name": "f", "arguments": "{"},
        }
        called = {"role": "assistant", "content": None, "tool_calls": [unparsed_call]}
        conversation = [*body["messages"], called, {"role": "tool", "tool_call_id": "c1"}]
        replayed = await router.post(
            "/v1/chat/completions", json={**body, "messages": conversation}
        )
        # Arguments nested too deep to read are as unreadable as malformed ones, not a 500.
        deep_call = {**unparsed_call, "id": "c2"}
        deep_call["function"] = {"name": "f", "arguments": "[" * 5000 + "]" * 5000}
        deep_called = {**called, "tool_calls": [deep_call]}
        deep_conversation = [*body["messages"], deep_called, {"role": "tool", "tool_call_id": "c2"}]
        replayed_deep = await router.post(
            "/v1/chat/completions", json={**body, "messages": deep_conversation}
        )
        listed = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}
        shaped = await router.post("/v1/chat/completions", json={**body, "response_format": listed})
        embeddings = await router.post(
            "/v1/embeddings", json={"capability": "reasoning", "input": "Hi"}
        )
        served = await router.post("/v1/chat/completions", json=body)

    assert response.status_code == 503
    assert "one answer a request" in response.json()["detail"]
    assert scored.status_code == 503
    assert "no log-probabilities" in scored.json()["detail"]
    assert heated.status_code == 503
    assert "temperature from 0 to 1, not 1.5" in heated.json()["detail"]
    assert replayed.status_code == 503
    assert "arguments as a JSON object; call 'c1' has '{'" in replayed.json()["detail"]
    assert replayed_deep.status_code == 503
    assert "arguments as a JSON object; call 'c2' has '[[[" in replayed_deep.json()["detail"]
    assert shaped.status_code == 503
    assert "whose input is a JSON object" in shaped.json()["detail"]
    assert embeddings.status_code == 503
    assert "no embeddings API" in embeddings.json()["detail"]
    # Nothing was sent, so nothing counts against Anthropic's health: its circuit stays closed.
    assert served.status_code == 200
    assert len(seen) == 1


async def test_anthropic_is_translated_both_ways(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    body = {
        "capability": "reasoning",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is a coupon?"},
        ],
        "user": "desk-7",
    }
    answered, streamed = await plain_and_streamed(make_router, tmp_path, body, seen)

    plain = answered.json()
    assert plain["choices"][0]["message"]["content"] == "Coupons are interest."
    assert plain["choices"][0]["finish_reason"] == "stop"
    # Anthropic counts the tokens read from its prompt cache and written to it apart from
    # input_tokens; OpenAI's prompt_tokens holds them all.
    assert plain["usage"] == {
        "prompt_tokens": 26,
        "completion_tokens": 4,
        "total_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 10},
        "cache_creation_input_tokens": 2,
    }
    sent = seen[0]
    assert sent["key"] == "sk-ant-test"
    assert sent["version"] == "2023-06-01"
    assert sent["body"]["system"] == "Be brief."
    assert sent["body"]["messages"] == [{"role": "user", "content": "What is a coupon?"}]
    assert sent["body"]["max_tokens"] == 1024
    assert sent["body"]["metadata"] == {"user_id": "desk-7"}
    events = sse_data(streamed)
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Coupons are interest."
    assert chunks[-1]["usage"] == plain["usage"]
    assert events[-1] == "[DONE]"


async def test_images_go_to_anthropic_as_image_blocks(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format: an image
    block's ``source`` is ``base64`` (with its media type) or ``url``; it takes JPEG, PNG,
    GIF and WebP only, so a request holding another type is not sent there."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    png = "data:image/png;base64,iVBORw0KGgo="
    chart = "https://example.invalid/q3-chart.webp"
    parts = [
        {"type": "text", "text": "Which quarter grew most?"},
        {"type": "image_url", "image_url": {"url": png, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": chart}},
    ]
    body = {"capability": "reasoning", "messages": [{"role": "user", "content": parts}]}
    # Anthropic takes no image in a system prompt: passed on for it to refuse, not dropped.
    logo = {"role": "system", "content": [{"type": "text", "text": "Desk."}, parts[2]]}
    with serve_asgi(fake_anthropic(seen)) as url:
        router = await _router_to_anthropic(make_router, tmp_path, url, model="vision = true")
        answered = await router.post("/v1/chat/completions", json=body)
        branded = await router.post(
            "/v1/chat/completions", json={**body, "messages": [logo, *body["messages"]]}
        )
        bitmap = {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}
        refused = await router.post(
            "/v1/chat/completions",
            json={**body, "messages": [{"role": "user", "content": [bitmap]}]},
        )

    assert answered.status_code == 200, answered.text
    assert answered.json()["choices"][0]["message"]["content"] == "Coupons are interest."
    assert seen[0]["body"]["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Which quarter grew most?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                },
                {"type": "image", "source": {"type": "url", "url": chart}},
            ],
        }
    ]
    assert branded.status_code == 200
    assert seen[1]["body"]["system"] == [
        {"type": "text", "text": "Desk."},
        {"type": "image", "source": {"type": "url", "url": chart}},
    ]
    assert refused.status_code == 503
    assert "JPEG, PNG, GIF and WebP images, not image/bmp" in refused.json()["detail"]
    assert len(seen) == 2


async def test_tools_and_a_conversation_of_tool_calls_are_translated_both_ways(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format: ``tools`` with
    ``input_schema``, ``tool_choice``, ``tool_use`` and ``tool_result`` blocks, answers that
    call a tool (plain, and streamed as ``input_json_delta`` pieces)."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    quote = {
        "type": "object",
        "properties": {"ticker": {"type": "string"}},
        "required": ["ticker"],
    }
    earlier_call = {
        "id": "call_0",
        "type": "function",
        "function": {"name": "get_quote", "arguments": '{"ticker": "MSFT"}'},
    }
    body = {
        "capability": "reasoning",
        "messages": [
            {"role": "user", "content": "Quote MSFT, then AAPL."},
            {"role": "assistant", "content": None, "tool_calls": [earlier_call]},
            {"role": "tool", "tool_call_id": "call_0", "content": "412.10"},
            {"role": "user", "content": "Now AAPL."},
        ],
        "tools": [
            {
                "type": "function",
                "function": {"name": "get_quote", "description": "Last price", "parameters": quote},
            }
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    plain, streamed = await plain_and_streamed(make_router, tmp_path, body, seen)

    sent = seen[0]["body"]
    assert sent["tools"] == [
        {"name": "get_quote", "description": "Last price", "input_schema": quote}
    ]
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Quote MSFT, then AAPL."}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_0",
                    "name": "get_quote",
                    "input": {"ticker": "MSFT"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "call_0", "content": "412.10"}],
        },
        {"role": "user", "content": [{"type": "text", "text": "Now AAPL."}]},
    ]
    assert plain.status_code == 200, plain.text
    choice = plain.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Looking it up."
    [call] = choice["message"]["tool_calls"]
    assert (call["id"], call["type"], call["function"]["name"]) == (
        "toolu_1",
        "function",
        "get_quote",
    )
    assert json.loads(call["function"]["arguments"]) == {"ticker": "AAPL"}
    events = sse_data(streamed)
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    pieces = [piece for d in deltas for piece in d["delta"].get("tool_calls", [])]
    # As OpenAI streams a call: its id and name first, with arguments "", then the arguments
    # piece by piece, the name not said again.
    assert pieces[0]["id"] == "toolu_1"
    assert pieces[0]["function"] == {"name": "get_quote", "arguments": ""}
    assert [sorted(p["function"]) for p in pieces[1:]] == [["arguments"]] * (len(pieces) - 1)
    assert not [p for p in pieces[1:] if "id" in p]
    assert {p["index"] for p in pieces} == {0}
    assert json.loads("".join(p["function"]["arguments"] for p in pieces)) == {"ticker": "AAPL"}
    assert deltas[-1]["finish_reason"] == "tool_calls"
    assert events[-1] == "[DONE]"


async def test_an_answer_in_json_is_asked_as_a_forced_tool_and_comes_back_as_text(
    make_router: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format, which has no
    ``response_format``: the schema goes as the one tool's ``input_schema``, forced by
    ``tool_choice``, and the tool's input (plain, or streamed in ``input_json_delta`` pieces)
    is the answer's content, which ends as a plain answer does."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    schema = {"properties": {"ticker": {"type": "string"}}, "required": ["ticker"]}
    body = {
        "capability": "reasoning",
        "messages": [{"role": "user", "content": "Which ticker is Apple's? As JSON."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": schema}},
    }
    plain, streamed = await plain_and_streamed(make_router, tmp_path, body, seen)

    sent = seen[0]["body"]
    assert sent["tools"] == [
        {
            "name": "json_answer",
            "description": "Give the answer as this JSON object.",
            "input_schema": {**schema, "type": "object"},
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "json_answer"}
    assert "response_format" not in sent
    choice = plain.json()["choices"][0]
    assert json.loads(choice["message"]["content"]) == {"ticker": "AAPL"}
    assert "tool_calls" not in choice["message"]
    assert choice["finish_reason"] == "stop"
    events = sse_data(streamed)
    deltas = [c["choices"][0] for c in map(json.loads, events[:-1]) if c["choices"]]
    assert json.loads("".join(d["delta"].get("content", "") for d in deltas)) == {"ticker": "AAPL"}
    assert not [d for d in deltas if "tool_calls" in d["delta"]]
    assert deltas[-1]["finish_reason"] == "stop"


async def test_anthropic_prompt_cache_marks_go_through_and_its_writes_cost_their_price(
    make_router: Any, tmp_path: Path, monkeypatch: Any, kafka_bootstrap: str
) -> None:
    """Anthropic played by a fake speaking its documented Messages wire format: text blocks
    with ``cache_control``, and a usage of 14 input tokens read, 10 from the prompt cache and
    2 written to it (each priced apart), 4 answered. With ``cache_prompts`` the router marks
    the system prompt's end and the conversation's end where the caller marked nothing, and
    leaves the caller's own marks as they are. Each call's usage event (on a real broker)
    says what was read from the cache and what was written to it, and the cost."""
    seen: list[dict[str, Any]] = []
    topic = f"llm-usage-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PAS_TEST_ANTHROPIC_KEY", "sk-ant-test")
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a coupon?"},
        {"role": "assistant", "content": "Interest."},
        {"role": "user", "content": "And a yield?"},
    ]
    rules = {"type": "text", "text": "Rules.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    marked_by_caller = [
        {"role": "system", "content": [rules, {"type": "text", "text": "Today."}]},
        {"role": "user", "content": "Hi"},
    ]
    with serve_asgi(fake_anthropic(seen)) as url:
        router = await _router_to_anthropic(
            make_router,
            tmp_path,
            url,
            provider="cache_prompts = true",
            model="cached_input_per_1k = 0.0003\ncache_write_per_1k = 0.00375",
            kafka_bootstrap_servers=kafka_bootstrap,
            usage_topic=topic,
        )
        for messages in (conversation, marked_by_caller):
            body = {"capability": "reasoning", "messages": messages}
            answer = await router.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
        streamed = await router.post(
            "/v1/chat/completions", json={**body, "stream": True, "stream_options": {}}
        )
        costs = (await router.get("/costs")).json()
        metrics = (await router.get("/metrics")).text
    published = await usage_events(kafka_bootstrap, topic)

    def text(words: str) -> dict[str, Any]:
        return {"type": "text", "text": words}

    ephemeral = {"cache_control": {"type": "ephemeral"}}
    assert seen[0]["body"]["system"] == [{**text("Be brief."), **ephemeral}]
    assert seen[0]["body"]["messages"] == [
        {"role": "user", "content": [text("What is a coupon?")]},
        {"role": "assistant", "content": [text("Interest.")]},
        {"role": "user", "content": [{**text("And a yield?"), **ephemeral}]},
    ]
    assert seen[1]["body"]["system"] == [rules, text("Today.")]
    assert seen[1]["body"]["messages"] == [{"role": "user", "content": [text("Hi")]}]
    assert answer.json()["usage"]["cache_creation_input_tokens"] == 2
    assert streamed.status_code == 200
    one_call = (14 * 0.003 + 10 * 0.0003 + 2 * 0.00375 + 4 * 0.015) / 1000
    assert costs["by_provider"]["anthropic"]["requests"] == 3
    assert abs(costs["by_provider"]["anthropic"]["cost_usd"] - 3 * one_call) < 1e-12
    tokens = {"name": "pas_router_tokens_total", "model": "claude-sonnet-4-5"}
    assert sample_value(metrics, **tokens, provider="anthropic", kind="prompt") == 78
    assert sample_value(metrics, **tokens, provider="anthropic", kind="cache_read") == 30
    assert sample_value(metrics, **tokens, provider="anthropic", kind="cache_write") == 6
    assert [(e.prompt_tokens, e.cached_tokens, e.cache_write_tokens) for e in published] == [
        (26, 10, 2)
    ] * 3
    assert all(abs(e.cost_usd - one_call) < 1e-12 for e in published)


def test_cache_prompts_is_refused_for_an_openai_compatible_provider(tmp_path: Path) -> None:
    """OpenAI-compatible servers cache a prompt's start unasked: there is nothing to mark."""
    config = providers_file(
        tmp_path,
        """
[[providers]]
name = "vllm"
base_url = "http://127.0.0.1:9/v1"
cache_prompts = true
[[providers.models]]
name = "m"
capabilities = ["reasoning"]
""",
    )

    with pytest.raises(SettingsError, match='cache_prompts is for kind = "anthropic"'):
        remote_candidates(config, environ={})


def test_the_example_providers_file_loads_with_its_prices() -> None:
    """deploy/providers.example.toml is what an operator copies: it must load as it is."""
    found = {c.id: c for c in remote_candidates("deploy/providers.example.toml", environ={})}

    assert {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"} <= set(found)
    mini = found["openai/gpt-4o-mini"]
    assert mini.unavailable == "no API key: set OPENAI_API_KEY"
    assert (mini.rpm, mini.tpm) == (500, 200000)
    # 1,000 prompt tokens, 800 of them cached, and 100 answered.
    assert mini.cost(1000, 100, 800) < mini.cost(1000, 100) == mini.cost(1000, 100, 0)
    sonnet = found["anthropic/claude-sonnet-4-5"]
    assert sonnet.cache_prompts
    # Of the same 1,000, 800 written to the cache: dearer than reading them all.
    assert sonnet.cost(1000, 100, 0, 800) > sonnet.cost(1000, 100)
