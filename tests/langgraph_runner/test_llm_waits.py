"""An LLM call that the server asks to wait (a 429 or 503 with ``Retry-After``: an overloaded
PAS LLM service, the router, a provider's rate limit) is tried again after that wait.

The server is a fake speaking OpenAI's chat-completions wire format (a scripted refusal, then
an answer), as the provider router or an OpenAI-compatible provider would send them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.asgi_server import serve_asgi
from tests.support.scripted_upstream import ScriptedUpstream


async def _probe_run(make_runner: Callable[..., Any], tmp_path: Path, upstream: Any) -> Any:
    """A probe run whose LLM node calls ``upstream``, with one attempt a node (so that only a
    wait inside the call can save it)."""
    with serve_asgi(upstream) as url:
        runner = await make_runner(
            llm_api="openai", llm_url=f"{url}/v1", node_max_attempts=1, node_retry_max_s=2.0
        )
        response = await runner.post(
            "/workflows/probe/runs?wait=true",
            json={"input": {"log": str(tmp_path / "probe.log"), "ask": "Rates and bonds?"}},
        )
    return response.json()


async def test_a_call_asked_to_wait_is_tried_again_after_the_wait(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    upstream = ScriptedUpstream("fast-model", [429, "ok"])
    upstream.reply_headers = {"Retry-After": "1"}

    run = await _probe_run(make_runner, tmp_path, upstream)

    assert run["status"] == "success", run
    assert upstream.acts == [429, "ok"]
    assert upstream.arrivals[1] - upstream.arrivals[0] >= 1.0


async def test_a_wait_longer_than_the_runner_allows_fails_the_call_at_once(
    make_runner: Callable[..., Any], tmp_path: Path
) -> None:
    upstream = ScriptedUpstream("fast-model", [503, "ok"])
    upstream.reply_headers = {"Retry-After": "30"}

    run = await _probe_run(make_runner, tmp_path, upstream)

    assert run["status"] == "error", run
    assert upstream.acts == [503]
    assert "503" in run["error"]
