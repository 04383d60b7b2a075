"""The runner's LLM nodes on the Ollama API send the configured key as a bearer token, as they
do on the OpenAI-compatible API: a PAS LLM service with a token, or an authenticating proxy in
front of Ollama, needs it.

Ollama cannot run here: the server is a stand-in that answers ``POST /api/chat`` in Ollama's
documented wire format (``tests/support/ollama_chat.py``) and records the headers."""

from __future__ import annotations

import pytest

from libs.common.schemas.workflows import WorkflowParameters
from services.langgraph_runner.llm import LLMGateway
from services.langgraph_runner.settings import RunnerSettings
from tests.support.asgi_server import serve_asgi
from tests.support.ollama_chat import OllamaChat


@pytest.mark.parametrize("key", ["s3cret", None])
async def test_the_key_goes_as_a_bearer_token_on_the_ollama_api(key: str | None) -> None:
    server = OllamaChat(["Yields rose."])
    with serve_asgi(server) as url:
        gateway = LLMGateway(RunnerSettings(llm_api="ollama", llm_url=url, llm_api_key=key))
        answer = await gateway.text(
            [("user", "What did yields do?")], WorkflowParameters(), max_tokens=16
        )

    assert answer == "Yields rose."
    sent = server.headers[-1].get("authorization")
    assert sent == (f"Bearer {key}" if key else None)
