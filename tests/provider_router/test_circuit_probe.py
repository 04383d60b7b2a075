"""A half-open circuit lets one probe through; however the probe ends, the circuit moves on.

The provider is played by a scripted OpenAI-compatible upstream
(``tests/support/scripted_upstream.py``): it fails with 503 until the circuit opens, then
answers the probe in the way under test, then answers normally. Cooldowns are short; the
tests wait for the router to report the circuit half-open rather than sleeping for a guessed
time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.provider_router.conftest import ask, one_provider, wait_for_circuit, wait_until
from tests.support.asgi_server import serve_asgi
from tests.support.scripted_upstream import ScriptedUpstream

CANDIDATE = "flaky/flaky"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_a_probe_answered_with_a_4xx_closes_the_circuit(
    make_router: Any, tmp_path: Path, stream: bool
) -> None:
    """A 4xx is the caller's problem, passed on as it is; the provider answered, so it is
    alive and its circuit closes."""
    upstream = ScriptedUpstream("flaky", [503, 503, 400, "ok"])
    with serve_asgi(upstream) as url:
        router = await make_router(
            use_registry=False,
            providers_file=one_provider(tmp_path, url, "flaky", "summarize"),
            retries=0,
            breaker_failures=2,
            breaker_cooldown_s=0.5,
        )
        failing = [
            await router.post("/v1/chat/completions", json=ask("summarize", stream=stream))
            for _ in range(2)
        ]
        await wait_for_circuit(router, CANDIDATE, "half_open")
        probe = await router.post("/v1/chat/completions", json=ask("summarize", stream=stream))
        after = [
            await router.post("/v1/chat/completions", json=ask("summarize", stream=stream))
            for _ in range(2)
        ]
        [row] = (await router.get("/providers")).json()["candidates"]

    assert [r.status_code for r in failing] == [503, 503]
    assert probe.status_code == 400
    assert "scripted 400" in probe.json()["detail"]
    assert [r.status_code for r in after] == [200, 200]
    assert [r.headers["x-pas-candidate"] for r in after] == [CANDIDATE] * 2
    assert upstream.acts == [503, 503, 400, "ok", "ok"]
    assert row["circuit"] == "closed"
    assert row["probe_in_flight"] is False
    assert row["in_flight"] == 0


def test_a_probe_stream_its_client_leaves_frees_the_probe(
    start_router: Any, tmp_path: Path
) -> None:
    """The probe is a stream; its client reads the first chunk and hangs up. Nothing was
    learnt about the provider, so the circuit stays half-open, and the next request is the
    probe. A real router process, so that the client's leaving is a real disconnect."""
    upstream = ScriptedUpstream("flaky", [503, "hold", "ok"])
    with serve_asgi(upstream) as url:
        router = start_router(
            ROUTER_PROVIDERS_FILE=one_provider(tmp_path, url, "flaky", "summarize"),
            ROUTER_RETRIES="0",
            ROUTER_BREAKER_FAILURES="1",
            ROUTER_BREAKER_COOLDOWN_S="0.5",
        )
        with httpx.Client(base_url=router.url, timeout=30) as http:

            def row() -> dict[str, Any]:
                [found] = http.get("/providers").json()["candidates"]
                return dict(found)

            failed = http.post("/v1/chat/completions", json=ask("summarize"))
            wait_until(lambda: row()["circuit"] == "half_open", "the circuit half-open")
            with http.stream(
                "POST", "/v1/chat/completions", json=ask("summarize", stream=True)
            ) as probe:
                first = next(probe.iter_bytes())
            # The client has hung up; the router lets go of the upstream when it notices.
            wait_until(lambda: upstream.callers_gone == 1, "the router leave the upstream")
            settled = wait_until(lambda: (r := row())["in_flight"] == 0 and r, "no call left")
            after = http.post("/v1/chat/completions", json=ask("summarize"))
            final = row()

    assert failed.status_code == 503
    assert probe.status_code == 200
    assert b"Rates" in first
    assert settled["circuit"] == "half_open"
    assert after.status_code == 200
    assert after.headers["x-pas-candidate"] == CANDIDATE
    assert upstream.acts == [503, "hold", "ok"]
    assert settled["probe_in_flight"] is False
    assert final["circuit"] == "closed"
