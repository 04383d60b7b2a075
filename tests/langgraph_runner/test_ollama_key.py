"""The runner's LLM nodes on the Ollama API send the configured key as a bearer token, as they
do on the OpenAI-compatible API: a PAS LLM service with a token, or an authenticating proxy in
front of Ollama, needs it.

Ollama cannot run here: the server is a stand-in that answers ``POST /api/chat`` in Ollama's
documented wire format (one JSON object, ``stream: false``) and records the headers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from libs.common.schemas.workflows import WorkflowParameters
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.settings import RunnerSettings
from tests.support.asgi_server import read_body, serve_asgi


class OllamaChat:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        self.headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        request = json.loads(body)
        answer = {
            "model": request["model"],
            "created_at": "2026-12-02T09:00:00Z",
            "message": {"role": "assistant", "content": "Yields rose."},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 12,
            "eval_count": 3,
        }
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})


@pytest.mark.parametrize("key", ["s3cret", None])
async def test_the_key_goes_as_a_bearer_token_on_the_ollama_api(key: str | None) -> None:
    server = OllamaChat()
    with serve_asgi(server) as url:
        gateway = LLMGateway(RunnerSettings(llm_api="ollama", llm_url=url, llm_api_key=key))
        answer = await gateway.text(
            [("user", "What did yields do?")], WorkflowParameters(), max_tokens=16
        )

    assert answer == "Yields rose."
    sent = server.headers[-1].get("authorization")
    assert sent == (f"Bearer {key}" if key else None)
