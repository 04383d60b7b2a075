"""``ROUTER_TOKEN`` (else ``PAS_TOKEN``): routing and chat need the bearer token; reads stay
open.

The provider is OpenAI, played by a fake speaking its chat-completions wire format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs.common.settings import load_settings
from services.provider_router.settings import RouterSettings
from tests.provider_router.conftest import ask, one_provider, wait_for_candidates
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder

GUARDED = [
    ("/route", {"capability": "summarize"}),
    ("/v1/chat/completions", ask("summarize")),
    ("/chat/completions", ask("summarize")),
]
READS = ["/health", "/metrics", "/providers", "/schema/openapi.json"]
OPERATOR_READS = ["/costs", "/keys"]
"""Every desk's spend: the router's token's to read."""


async def test_with_a_token_routing_chat_and_spend_need_it_and_other_reads_do_not(
    make_router: Any, tmp_path: Path
) -> None:
    upstream = OpenAIResponder("guarded")
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False,
            providers_file=one_provider(tmp_path, url, "guarded", "summarize"),
            token="s3cret",
        )
        answers = {}
        for path, body in GUARDED:
            answers[path] = [
                await router.post(path, json=body, headers=headers)
                for headers in (
                    {},
                    {"Authorization": "Bearer wrong"},
                    {"Authorization": "Basic czNjcmV0"},
                    {"Authorization": "Bearer s3cret"},
                )
            ]
        reads = {path: (await router.get(path)).status_code for path in READS}
        spend = {
            path: [
                (await router.get(path, headers=headers)).status_code
                for headers in ({}, {"Authorization": "Bearer s3cret"})
            ]
            for path in OPERATOR_READS
        }

    assert {path: [r.status_code for r in got] for path, got in answers.items()} == {
        path: [401, 401, 401, 200] for path, _ in GUARDED
    }
    refused = answers["/v1/chat/completions"][0]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.headers["www-authenticate"] == 'Bearer realm="pas"'
    assert "s3cret" not in refused.text
    assert len(upstream.requests) == 2, "only the two chats with the token reached OpenAI"
    assert reads == dict.fromkeys(READS, 200)
    assert spend == {path: [401, 200] for path in OPERATOR_READS}


async def test_without_a_token_routing_and_chat_are_open(make_router: Any, tmp_path: Path) -> None:
    upstream = OpenAIResponder("open")
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False, providers_file=one_provider(tmp_path, url, "open", "summarize")
        )
        answers = [(await router.post(path, json=body)).status_code for path, body in GUARDED]

    assert answers == [200, 200, 200]


def test_the_token_is_read_from_router_token_else_pas_token_and_never_logged() -> None:
    own = load_settings(
        RouterSettings, environ={"ROUTER_TOKEN": "s3cret", "PAS_TOKEN": "shared"}, env_file=""
    )
    shared = load_settings(RouterSettings, environ={"PAS_TOKEN": "shared"}, env_file="")

    assert own.token == "s3cret"
    assert shared.token == "shared"
    assert own.redacted()["token"] == "***"


async def test_router_reaches_guarded_llm_services_with_their_token(
    make_router: Any, start_llm: Any
) -> None:
    """An LLM service with LLM_TOKEN refuses callers without it; the router sends its
    ``local_token`` and is served. Without it the service refuses the router, not the caller:
    a 502 naming the candidate's 401 (passed on, a 401 would read as the caller's token)."""
    start_llm("tinyllama", LLM_TOKEN="llm-secret")
    with_token = await make_router(local_token="llm-secret")
    await wait_for_candidates(with_token, {"local/llm_tinyllama_1b"})
    answered = await with_token.post("/v1/chat/completions", json=ask("classification"))
    assert answered.status_code == 200, answered.text
    assert answered.headers["x-pas-candidate"] == "local/llm_tinyllama_1b"

    without = await make_router()
    await wait_for_candidates(without, {"local/llm_tinyllama_1b"})
    refused = await without.post("/v1/chat/completions", json=ask("classification"))
    assert refused.status_code == 502, refused.text
    assert "local/llm_tinyllama_1b: answered 401" in refused.json()["detail"]
    assert "www-authenticate" not in refused.headers
