"""Routing against real PAS LLM services (embedded model) found through a real registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.provider_router.conftest import (
    ask,
    candidates_by_id,
    one_provider,
    wait_for_candidates,
    wait_for_circuit,
)
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder
from tests.support.processes import free_port


async def test_capability_routing_prefers_local_and_serves_through_the_chain(
    make_router: Any, start_llm: Any
) -> None:
    llama = start_llm("llama31_8b")
    tiny = start_llm("tinyllama")
    router = await make_router()
    await wait_for_candidates(router, {"local/llm_llama31_8b", "local/llm_tinyllama_1b"})

    route = (
        await router.post("/route", json={"capability": "reasoning", "prefer_local": True})
    ).json()
    classify = (await router.post("/route", json={"capability": "classification"})).json()
    answer = await router.post("/v1/chat/completions", json=ask("classification"))

    assert route["provider"] == "local"
    assert route["endpoint"] == llama.url.replace("127.0.0.1", "localhost")
    assert route["agent_id"] == "llm_llama31_8b"
    assert "prefer_local" in route["reason"]
    assert classify["endpoint"] == tiny.url.replace("127.0.0.1", "localhost")
    assert answer.status_code == 200
    assert answer.headers["x-pas-candidate"] == "local/llm_tinyllama_1b"
    assert answer.headers["x-pas-fallbacks"] == "0"
    assert answer.json()["usage"]["completion_tokens"] <= 8


async def test_costs_and_provider_state_follow_live_requests(
    make_router: Any, start_llm: Any
) -> None:
    start_llm("llama31_8b")
    router = await make_router()
    await wait_for_candidates(router, {"local/llm_llama31_8b"})

    for _ in range(2):
        assert (await router.post("/chat/completions", json=ask("planning"))).status_code == 200
    costs = (await router.get("/costs?window=1h")).json()
    state = (await router.get("/providers")).json()["candidates"]

    assert costs["by_capability"]["planning"]["requests"] == 2
    assert costs["by_provider"]["local"]["cost_usd"] == 0.0
    assert costs["total"]["completion_tokens"] > 0
    [llama] = [c for c in state if c["id"] == "local/llm_llama31_8b"]
    assert llama["served"] == 2
    assert llama["latency_ms"] > 0
    assert llama["tokens_per_s"] > 0
    assert llama["circuit"] == "closed"
    metrics = (await router.get("/metrics")).text
    decisions = "pas_router_decisions_total"
    labels = 'model="smollm2-135m-instruct",provider="local",strategy="balanced"'
    assert f"{decisions}{{{labels}}} 2.0" in metrics


async def test_streaming_passes_through_and_is_counted(make_router: Any, start_llm: Any) -> None:
    start_llm("llama31_8b")
    router = await make_router()
    await wait_for_candidates(router, {"local/llm_llama31_8b"})

    plain = (await router.post("/v1/chat/completions", json=ask("reasoning"))).json()
    streamed = await router.post("/v1/chat/completions", json=ask("reasoning", stream=True))

    events = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert streamed.headers["x-pas-provider"] == "local"
    costs = (await router.get("/costs")).json()
    assert costs["by_capability"]["reasoning"]["requests"] == 2
    assert (
        costs["by_capability"]["reasoning"]["completion_tokens"]
        == 2 * plain["usage"]["completion_tokens"]
    )


async def test_tool_calls_choices_and_embeddings_pass_through_the_router(
    make_router: Any, start_llm: Any
) -> None:
    start_llm("llama31_8b")
    router = await make_router()
    await wait_for_candidates(router, {"local/llm_llama31_8b"})
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_price",
                "parameters": {
                    "type": "object",
                    "properties": {"ticker": {"type": "string", "enum": ["AAPL", "MSFT"]}},
                    "required": ["ticker"],
                },
            },
        }
    ]

    answer = await router.post(
        "/v1/chat/completions",
        json=ask("reasoning", tools=tools, tool_choice="required", max_tokens=48),
    )
    refused = await router.post(
        "/v1/chat/completions", json=ask("reasoning", tools=[{"type": "function"}])
    )
    drawn = await router.post(
        "/v1/chat/completions", json=ask("reasoning", n=2, temperature=1.0, seed=3)
    )
    embedded = await router.post(
        "/v1/embeddings", json={"capability": "reasoning", "input": ["Bonds", "Rates"]}
    )
    costs = (await router.get("/costs")).json()

    assert answer.status_code == 200
    choice = answer.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "get_price"
    assert json.loads(call["function"]["arguments"])["ticker"] in {"AAPL", "MSFT"}
    assert refused.status_code == 400
    assert "tools[0]" in refused.text
    assert [choice["index"] for choice in drawn.json()["choices"]] == [0, 1]
    assert embedded.status_code == 200, embedded.text
    assert embedded.headers["x-pas-candidate"] == "local/llm_llama31_8b"
    assert [len(item["embedding"]) for item in embedded.json()["data"]] == [576, 576]
    spent = answer.json()["usage"]["prompt_tokens"] + drawn.json()["usage"]["prompt_tokens"]
    spent += embedded.json()["usage"]["prompt_tokens"]
    assert costs["by_capability"]["reasoning"]["prompt_tokens"] == spent


async def test_a_dead_candidate_falls_back_then_its_circuit_opens_and_closes(
    make_router: Any, start_llm: Any, tmp_path: Path
) -> None:
    """A service killed hard stays in the registry; the router falls back, opens its circuit,
    and closes it again once the service is back and a probe succeeds.

    The fallback is a priced remote provider (OpenAI played by a fake), so the free local
    service comes first whenever its circuit lets it: the order never rests on timing. The
    cooldown outlasts the checks made while the circuit is open; the test then waits for the
    router to report it half-open instead of sleeping for a guessed time.
    """
    port = free_port()
    flaky = start_llm("llama31_8b", port=port)
    steady = OpenAIResponder("steady")
    with serve_asgi(steady) as steady_url:
        providers = tmp_path / "providers.toml"
        providers.write_text(
            f'[[providers]]\nname = "steady"\nbase_url = "{steady_url}/v1"\n'
            '[[providers.models]]\nname = "steady"\ncapabilities = ["reasoning"]\n'
            "input_per_1k = 0.001\noutput_per_1k = 0.001\n"
        )
        router = await make_router(providers_file=str(providers), breaker_cooldown_s=5.0)
        await wait_for_candidates(router, {"local/llm_llama31_8b", "steady/steady"})
        before = await router.post("/v1/chat/completions", json=ask("reasoning", strategy="cost"))

        flaky.kill()
        first = await router.post("/v1/chat/completions", json=ask("reasoning", strategy="cost"))
        await router.post("/v1/chat/completions", json=ask("reasoning", strategy="cost"))
        state = await candidates_by_id(router)
        skipped = await router.post("/v1/chat/completions", json=ask("reasoning", strategy="cost"))

        start_llm("llama31_8b", port=port)
        half_open = await wait_for_circuit(router, "local/llm_llama31_8b", "half_open")
        probe = await router.post("/v1/chat/completions", json=ask("reasoning", strategy="cost"))
        after = await candidates_by_id(router)

    assert before.headers["x-pas-candidate"] == "local/llm_llama31_8b"
    assert first.status_code == 200
    assert first.headers["x-pas-candidate"] == "steady/steady"
    assert first.headers["x-pas-fallbacks"] == "1"
    assert "local/llm_llama31_8b: ConnectError" in first.headers["x-pas-fallback-reasons"]
    assert state["local/llm_llama31_8b"]["circuit"] == "open"
    assert state["local/llm_llama31_8b"]["cooling_down_until"] is not None
    assert skipped.status_code == 200
    assert skipped.headers["x-pas-candidate"] == "steady/steady"
    assert skipped.headers["x-pas-fallbacks"] == "0", "an open circuit is not even tried"
    assert half_open["failed"] == state["local/llm_llama31_8b"]["failed"]
    assert probe.headers["x-pas-candidate"] == "local/llm_llama31_8b"
    assert probe.headers["x-pas-fallbacks"] == "0"
    assert after["local/llm_llama31_8b"]["circuit"] == "closed"


async def test_a_service_registered_mid_test_is_used_without_restart(
    make_router: Any, start_llm: Any
) -> None:
    router = await make_router()
    before = await router.post("/route", json={"capability": "tagging"})

    start_llm("tinyllama")
    await wait_for_candidates(router, {"local/llm_tinyllama_1b"})
    after = await router.post("/route", json={"capability": "tagging"})

    assert before.status_code == 404
    assert "tagging" in before.json()["detail"]
    assert after.status_code == 200
    assert after.json()["agent_id"] == "llm_tinyllama_1b"


async def test_performance_moves_away_from_a_slow_candidate(
    make_router: Any, register_agent: Any
) -> None:
    slow, fast = OpenAIResponder("slow", delay_s=0.3), OpenAIResponder("fast")
    with serve_asgi(slow) as slow_url, serve_asgi(fast) as fast_url:
        register_agent("slow_llm", slow_url, ["summarize"], "slow")
        register_agent("fast_llm", fast_url, ["summarize"], "fast")
        router = await make_router()
        await wait_for_candidates(router, {"local/slow_llm", "local/fast_llm"})

        for _ in range(4):  # both get measured (unmeasured candidates go first)
            await router.post("/v1/chat/completions", json=ask("summarize", strategy="performance"))
        served = [
            (
                await router.post(
                    "/v1/chat/completions", json=ask("summarize", strategy="performance")
                )
            ).headers["x-pas-candidate"]
            for _ in range(5)
        ]

    assert served == ["local/fast_llm"] * 5
    assert len(slow.requests) <= 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"capability": "reasoning", "strategy": "cheapest"}, "strategy"),
        ({"capability": 7}, "capability"),
        ({"capability": "reasoning", "colour": "blue"}, "colour"),
        # Chat routes by the capability when given both; /route would plan the two together.
        ({"capability": "reasoning", "model": "llama3.1:8b"}, "not both"),
    ],
)
async def test_bad_route_requests_are_400(
    make_router: Any, body: dict[str, Any], field: str
) -> None:
    router = await make_router(use_registry=False)
    response = await router.post("/route", json=body)
    assert response.status_code == 400
    assert field in response.json()["detail"]


async def test_bad_chat_requests_are_4xx_with_the_reason(make_router: Any) -> None:
    router = await make_router(use_registry=False)

    nothing = await router.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
    )
    no_messages = await router.post("/v1/chat/completions", json={"capability": "reasoning"})
    unknown = await router.post("/v1/chat/completions", json=ask("astrology"))

    assert nothing.status_code == 404
    assert "capability" in nothing.json()["detail"]
    assert no_messages.status_code == 400
    assert "messages" in no_messages.json()["detail"]
    assert unknown.status_code == 404
    assert "astrology" in unknown.json()["detail"]


class FailsOnce(OpenAIResponder):
    """Answers its first request with a 502, the next ones as the responder does."""

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        first = len(self.requests) == 1
        self.reply = (502, b'{"error": {"message": "bad gateway"}}') if first else None
        await super()._answer(request, send)


@pytest.mark.parametrize("retries", [1, 0])
async def test_a_transient_failure_is_asked_again_of_the_same_candidate(
    make_router: Any, tmp_path: Path, retries: int
) -> None:
    """A 502, then answers: with ``ROUTER_RETRIES`` the same candidate is asked again and the
    caller gets its answer; without, the call fails over (here to nothing: a 503)."""
    upstream = FailsOnce("only")
    with serve_asgi(upstream) as url:
        providers = one_provider(tmp_path, url, "only", "reasoning")
        router = await make_router(providers_file=providers, use_registry=False, retries=retries)
        answer = await router.post("/v1/chat/completions", json=ask("reasoning"))

    if retries:
        assert answer.status_code == 200
        assert answer.headers["x-pas-candidate"] == "only/only"
        assert answer.headers["x-pas-fallbacks"] == "0"
        assert len(upstream.requests) == 2
    else:
        assert answer.status_code == 503
        assert "502" in answer.text
        assert len(upstream.requests) == 1
