"""Requests holding images go only to candidates that take them.

The text-only candidate is a real PAS LLM service on the embedded model. The model that takes
images is OpenAI, which cannot be reached from here: a fake speaking its documented chat
completions wire format plays it (``image_url`` content parts, passed on as sent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.provider_router.conftest import provider_toml, providers_file, wait_for_candidates
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder

CHART_URL = "data:image/png;base64,iVBORw0KGgo="
CHART = {"type": "image_url", "image_url": {"url": CHART_URL}}


def _asking(content: Any) -> dict[str, Any]:
    return {
        "capability": "reasoning",
        "strategy": "cost",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 6,
        "temperature": 0,
    }


async def test_images_skip_the_text_only_model_and_reach_one_that_takes_them(
    make_router: Any, start_llm: Any, tmp_path: Path
) -> None:
    start_llm("llama31_8b")
    seeing = OpenAIResponder("gpt-seeing")
    with serve_asgi(seeing) as url:
        config = providers_file(
            tmp_path,
            provider_toml(
                "openai", f"{url}/v1", "gpt-seeing", "reasoning", model_lines="vision = true"
            ),
        )
        router = await make_router(providers_file=config)
        rows = await wait_for_candidates(router, {"local/llm_llama31_8b", "openai/gpt-seeing"})
        parts = [{"type": "text", "text": "Which quarter grew most?"}, CHART]

        text = await router.post("/v1/chat/completions", json=_asking("Is a bond a loan?"))
        pictured = await router.post("/v1/chat/completions", json=_asking(parts))
        streamed = await router.post(
            "/v1/chat/completions", json={**_asking(parts), "stream": True}
        )
        plan = await router.post(
            "/route", json={"capability": "reasoning", "strategy": "cost", "images": True}
        )
        nowhere = await router.post(
            "/v1/chat/completions",
            json=_asking([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]),
        )

    # The cheapest model reads text only, so it answers text and is passed over for images.
    assert rows["local/llm_llama31_8b"]["vision"] is False
    assert rows["openai/gpt-seeing"]["vision"] is True
    assert text.status_code == 200
    assert text.headers["x-pas-provider"] == "local"
    assert pictured.status_code == 200, pictured.text
    assert pictured.headers["x-pas-provider"] == "openai"
    assert pictured.headers["x-pas-fallbacks"] == "0"
    assert streamed.status_code == 200
    assert streamed.headers["x-pas-provider"] == "openai"
    assert [r["messages"][0]["content"] for r in seeing.requests] == [parts, parts]
    decision = plan.json()
    assert decision["candidate_id"] == "openai/gpt-seeing"
    assert decision["fallbacks"] == []
    assert {c["id"]: c["reason"] for c in decision["considered"]} == {
        "local/llm_llama31_8b": "reads text only; the request holds images",
        "openai/gpt-seeing": None,
    }
    assert nowhere.status_code == 400
    assert "url" in nowhere.json()["detail"]


async def test_with_no_model_that_takes_images_the_answer_says_so(
    make_router: Any, register_agent: Any, tmp_path: Path
) -> None:
    """The agents are fakes speaking OpenAI's chat completions wire format: one whose
    registration says it serves a vision model, one that does not."""
    seeing = OpenAIResponder("llava")
    with serve_asgi(seeing) as url:
        register_agent("llm_text", url, ["reasoning"], "smollm2")
        router = await make_router()
        await wait_for_candidates(router, {"local/llm_text"})
        refused = await router.post("/v1/chat/completions", json=_asking([CHART]))
        register_agent("llm_llava", url, ["reasoning"], "llava", vision=True)
        await wait_for_candidates(router, {"local/llm_llava"})
        served = await router.post("/v1/chat/completions", json=_asking([CHART]))
        # A screenshot as a data URL passes the 1 MiB bodies PAS services take by default.
        screenshot = {"type": "image_url", "image_url": {"url": CHART_URL + "A" * 3_000_000}}
        large = await router.post("/v1/chat/completions", json=_asking([screenshot]))

    assert refused.status_code == 404
    assert refused.json()["detail"] == (
        "no candidate for capability 'reasoning' takes images: local/llm_text read text only "
        "(one that takes them says vision = true in the providers file or in its agent's "
        "metadata)"
    )
    assert served.status_code == 200
    assert served.headers["x-pas-candidate"] == "local/llm_llava"
    assert seeing.requests[0]["messages"][0]["content"] == [CHART]
    assert large.status_code == 200
    assert seeing.requests[1]["messages"][0]["content"] == [screenshot]
