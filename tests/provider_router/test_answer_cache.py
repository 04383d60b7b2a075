"""The router's answer cache: a request asked again at temperature 0 is answered from it, with
no call and no spend; identical requests at once make one call; ``Cache-Control`` is heeded.

The provider is OpenAI played by a fake speaking its chat-completions wire format
(tests/support/openai_responder.py), which counts the requests that reach it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from services.provider_router.answer_cache import AnswerCache, cache_key
from tests.provider_router.conftest import ask, one_provider
from tests.support.asgi_server import serve_asgi
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder


async def cached_router(make_router: Any, tmp_path: Path, url: str) -> Any:
    config = one_provider(tmp_path, url, "openai", "summarize")
    return await make_router(use_registry=False, providers_file=config, cache_ttl_s=60)


async def test_the_same_request_again_is_answered_without_a_call_or_spend(
    make_router: Any, tmp_path: Path
) -> None:
    responder = OpenAIResponder("openai")
    with serve_asgi(responder) as url:
        router = await cached_router(make_router, tmp_path, url)
        first = await router.post("/v1/chat/completions", json=ask("summarize"))
        # The same request with its fields in another order.
        again = await router.post(
            "/v1/chat/completions", json=dict(reversed(ask("summarize").items()))
        )
        sampled = [
            await router.post("/v1/chat/completions", json=ask("summarize", temperature=0.7))
            for _ in range(2)
        ]
        costs = (await router.get("/costs")).json()
        metrics = (await router.get("/metrics")).text

    assert (first.headers["x-pas-cache"], again.headers["x-pas-cache"]) == ("miss", "hit")
    assert again.content == first.content
    assert again.headers["x-pas-candidate"] == first.headers["x-pas-candidate"]
    # Answers sampled at a temperature above 0 are each the model's own.
    assert ["x-pas-cache" in r.headers for r in sampled] == [False, False]
    assert len(responder.requests) == 3
    assert costs["by_provider"]["openai"]["requests"] == 3
    assert sample_value(metrics, "pas_router_cache_total", operation="chat", outcome="hit") == 1
    assert sample_value(metrics, "pas_router_cache_bytes") > 0


async def test_cache_control_asks_for_a_fresh_answer_or_none_kept(
    make_router: Any, tmp_path: Path
) -> None:
    responder = OpenAIResponder("openai")
    with serve_asgi(responder) as url:
        router = await cached_router(make_router, tmp_path, url)
        body = ask("summarize")
        unkept = await router.post(
            "/v1/chat/completions", json=body, headers={"cache-control": "no-store"}
        )
        first = await router.post("/v1/chat/completions", json=body)
        fresh = await router.post(
            "/v1/chat/completions", json=body, headers={"cache-control": "no-cache"}
        )
        kept = await router.post("/v1/chat/completions", json=body)

    assert "x-pas-cache" not in unkept.headers
    assert [r.headers["x-pas-cache"] for r in (first, fresh, kept)] == ["miss", "miss", "hit"]
    assert len(responder.requests) == 3


async def test_identical_requests_at_once_make_one_call(start_router: Any, tmp_path: Path) -> None:
    """Through a real router process (the in-process test client serves one request at a
    time)."""
    responder = OpenAIResponder("openai", delay_s=0.5)
    with serve_asgi(responder) as url:
        router = start_router(
            ROUTER_PROVIDERS_FILE=one_provider(tmp_path, url, "openai", "summarize"),
            ROUTER_CACHE_TTL_S="60",
        )
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as client:
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=ask("summarize")) for _ in range(3))
            )

    assert sorted(a.headers["x-pas-cache"] for a in answers) == ["coalesced", "coalesced", "miss"]
    assert len({a.content for a in answers}) == 1
    assert len(responder.requests) == 1


async def test_kept_answers_expire_and_are_bounded_by_memory() -> None:
    now = [0.0]
    cache = AnswerCache(ttl_s=10, max_bytes=10, clock=lambda: now[0])
    keys = [cache_key("embeddings", {"input": str(n)}, ()) or b"" for n in range(3)]
    calls: list[int] = []

    async def answer(n: int) -> tuple[bytes, dict[str, str]]:
        calls.append(n)
        return b"x" * 4, {}

    for n, key in enumerate(keys):
        await cache.answer(key, lambda n=n: answer(n))  # type: ignore[misc]
    # 12 bytes asked for 10: the least recently used answer went.
    assert cache.bytes == 8
    _, outcome = await cache.answer(keys[0], lambda: answer(0))
    assert outcome == "miss"
    now[0] = 11
    _, outcome = await cache.answer(keys[2], lambda: answer(2))
    assert outcome == "miss"
    assert calls == [0, 1, 2, 0, 2]
