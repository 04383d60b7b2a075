"""The router's refusals and failures as the official ``openai`` client reads them: the reason
in the exception's message, with its type and the field at fault, not a bare status.

The providers are OpenAI-compatible servers played by a fake speaking OpenAI's documented
chat-completions wire format (``tests/support/openai_responder.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.provider_router.conftest import one_provider
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder

MESSAGES: list[Any] = [{"role": "user", "content": "Is a bond a loan?"}]


async def test_the_openai_client_shows_why_the_router_refused_or_failed(
    start_router: Any, tmp_path: Path
) -> None:
    failing = OpenAIResponder("failing", reply=(503, b"overloaded"))
    with serve_asgi(failing) as url:
        router = start_router(
            ROUTER_PROVIDERS_FILE=one_provider(tmp_path, url, "failing", "summarize"),
            ROUTER_TOKEN="s3cret",
            ROUTER_RETRIES="0",
        )
        client = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="s3cret", max_retries=0)
        stranger = openai.AsyncOpenAI(base_url=f"{router.url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.BadRequestError) as bad_temperature:
            await client.chat.completions.create(model="failing", messages=MESSAGES, temperature=9)
        with pytest.raises(openai.AuthenticationError) as unknown_key:
            await stranger.chat.completions.create(model="failing", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as every_candidate_failed:
            await client.chat.completions.create(model="failing", messages=MESSAGES)

    assert "temperature" in bad_temperature.value.message
    assert bad_temperature.value.param == "temperature"
    assert bad_temperature.value.type == "invalid_request_error"
    assert unknown_key.value.type == "authentication_error"
    assert unknown_key.value.message != "Error code: 401"
    # Every candidate overloaded: the router is too, for now.
    assert every_candidate_failed.value.status_code == 503
    assert every_candidate_failed.value.type == "server_error"
    assert "failing/failing: answered 503: overloaded" in every_candidate_failed.value.message
