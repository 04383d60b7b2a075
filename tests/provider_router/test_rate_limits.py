"""A candidate's pace: its provider's requests and tokens a minute (``rpm``, ``tpm``) and the
pause a provider asks for (a 429's ``Retry-After``), kept by passing it over for the next.

The providers are OpenAI played by fakes speaking its chat-completions wire format
(tests/support/openai_responder.py): 16 tokens an answer (11 prompt, 5 completion), or a 429
with ``Retry-After``, as OpenAI sends it at its rate limit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from services.provider_router.rate_limits import RateWindow
from services.provider_router.shared_pace import SharedPace
from services.provider_router.store import SQLiteSpendStore
from tests.provider_router.conftest import ask, provider_toml, providers_file
from tests.support.asgi_server import serve_asgi
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder


def two_providers(tmp_path: Path, cheap_url: str, dear_url: str, cheap_limits: str) -> str:
    """``cheap`` (with ``cheap_limits``) and ``dear``, both OpenAI-compatible, both serving
    capability ``pace``; the ``cost`` strategy asks ``cheap`` first."""
    return providers_file(
        tmp_path,
        provider_toml("cheap", f"{cheap_url}/v1", "cheap-model", "pace", model_lines=cheap_limits),
        provider_toml("dear", f"{dear_url}/v1", "dear-model", "pace", input_per_1k=2.0),
    )


async def served_by(router: Any, count: int) -> list[str]:
    served = []
    for _ in range(count):
        answer = await router.post("/v1/chat/completions", json=ask("pace", strategy="cost"))
        assert answer.status_code == 200, answer.text
        served.append(answer.headers["x-pas-candidate"])
    return served


def provider_row(providers: list[dict[str, Any]], candidate: str) -> dict[str, Any]:
    [row] = [p for p in providers if p["id"] == candidate]
    return row


@pytest.mark.parametrize(
    ("limits", "minute", "said"),
    [
        # Two requests a minute.
        ("rpm = 2", {"rpm": 2, "requests_last_minute": 2}, "rpm 2"),
        # 16 tokens an answer against 20 a minute: a second request still goes (16 < 20), a
        # third does not (32).
        ("tpm = 20", {"tpm": 20, "tokens_last_minute": 32}, "tpm 20"),
    ],
)
async def test_a_candidate_at_its_limit_a_minute_is_passed_over(
    make_router: Any, tmp_path: Path, limits: str, minute: dict[str, int], said: str
) -> None:
    cheap, dear = OpenAIResponder("cheap-model"), OpenAIResponder("dear-model")
    with serve_asgi(cheap) as cheap_url, serve_asgi(dear) as dear_url:
        config = two_providers(tmp_path, cheap_url, dear_url, limits)
        router = await make_router(use_registry=False, providers_file=config)
        served = await served_by(router, 3)
        providers = (await router.get("/providers")).json()["candidates"]
        metrics = (await router.get("/metrics")).text

    assert served == ["cheap/cheap-model", "cheap/cheap-model", "dear/dear-model"]
    assert (len(cheap.requests), len(dear.requests)) == (2, 1)
    row = provider_row(providers, "cheap/cheap-model")
    assert {key: row[key] for key in minute} == minute
    cheap_minute = {"candidate": "cheap/cheap-model"}
    assert sample_value(metrics, "pas_router_last_minute", **cheap_minute, kind="requests") == 2
    assert sample_value(metrics, "pas_router_last_minute", **cheap_minute, kind="tokens") == 32
    assert row["available"] is False
    assert said in row["unavailable_reason"]


async def test_a_provider_that_asks_to_wait_is_left_alone_that_long(
    make_router: Any, tmp_path: Path
) -> None:
    """A 429 with ``Retry-After: 30``: the request goes on to the next candidate at once (not
    again to the same one, though the router retries a 429 otherwise), and so do the next
    requests, without asking the paused one."""
    limited = OpenAIResponder(
        "cheap-model",
        reply=(429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}'),
        reply_headers={"retry-after": "30"},
    )
    dear = OpenAIResponder("dear-model")
    with serve_asgi(limited) as cheap_url, serve_asgi(dear) as dear_url:
        config = two_providers(tmp_path, cheap_url, dear_url, "")
        router = await make_router(use_registry=False, providers_file=config)
        first = await router.post("/v1/chat/completions", json=ask("pace", strategy="cost"))
        later = await served_by(router, 2)
        providers = (await router.get("/providers")).json()["candidates"]
        metrics = (await router.get("/metrics")).text

    assert first.status_code == 200
    assert first.headers["x-pas-candidate"] == "dear/dear-model"
    assert "429" in first.headers["x-pas-fallback-reasons"]
    assert later == ["dear/dear-model"] * 2
    assert len(limited.requests) == 1
    row = provider_row(providers, "cheap/cheap-model")
    assert 20 < row["asked_to_wait_s"] <= 30
    waited = sample_value(
        metrics, "pas_router_asked_to_wait_seconds", candidate="cheap/cheap-model"
    )
    assert 20 < waited <= 30
    assert "asked to wait" in row["unavailable_reason"]


def test_the_minute_moves_on() -> None:
    """Requests and tokens older than a minute no longer count; a pause ends."""
    now = [1000.0]
    window = RateWindow(rpm=1, tpm=100, clock=lambda: now[0])
    window.started()
    window.used(150)
    window.pause(5.0, "429")

    assert "asked to wait" in (window.why_not() or "")
    now[0] += 6
    assert "rpm 1" in (window.why_not() or "")
    now[0] += 54.5
    assert window.why_not() is None
    assert window.counts() == (0, 0)


async def test_calls_made_while_the_database_was_away_are_told_when_it_is_back(
    tmp_path: Path,
) -> None:
    """Two routers' pace on one SQLite file (routers in one process here, each with its own
    connection): one's calls reach the other once stored, never counted twice by itself."""
    path = str(tmp_path / "pace.db")
    stores = SQLiteSpendStore(path), SQLiteSpendStore(path)
    for store in stores:
        await store.open()
    here, there = RateWindow(rpm=3), RateWindow(rpm=3)
    sharing_here = SharedPace(stores[0], {"c": here}, sync_s=1.0)
    sharing_there = SharedPace(stores[1], {"c": there}, sync_s=1.0)
    here.started()
    here.started()
    here.used(40)

    await stores[0].close()
    with pytest.raises(ValueError, match="no active connection"):
        await sharing_here.share()
    await stores[0].open()
    await sharing_here.share()
    await sharing_there.share()
    heard = there.counts()
    there.started()
    for store in stores:
        await store.close()

    assert heard == (2, 40)
    assert here.counts() == (2, 40)
    assert there.why_not() == "at its rate limit: 3 requests in the last minute (rpm 3)"


class SpendsAnotherFirst(OpenAIResponder):
    """An OpenAI-compatible fake whose first chat request, before its answer, has the router
    serve ``meanwhile`` (another call, which uses up a candidate's pace while this one is
    under way), then fails with a 500; it answers every later request as usual."""

    def __init__(self, model: str, meanwhile: dict[str, Any]) -> None:
        super().__init__(model)
        self.meanwhile = meanwhile
        self.router_url = ""
        self.meanwhile_status: int | None = None

    async def _answer(self, request: dict[str, Any], send: Any) -> None:
        if len(self.requests) > 1:
            await super()._answer(request, send)
            return
        async with httpx.AsyncClient(base_url=self.router_url, timeout=30) as http:
            answer = await http.post("/v1/chat/completions", json=self.meanwhile)
            self.meanwhile_status = answer.status_code
        error = b'{"error": {"message": "overloaded", "type": "server_error"}}'
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": error})


def test_a_fallback_at_its_limit_by_then_is_not_asked(start_router: Any, tmp_path: Path) -> None:
    """``dear`` (``rpm = 1``) is usable when the call is planned; while ``cheap`` is tried,
    another call uses up its minute; ``cheap`` fails, and ``dear`` is not asked again within
    the minute: the call fails, naming why. A real router process, which ``cheap`` calls."""
    meanwhile = {**ask("pace"), "capability": None, "model": "dear-model"}
    cheap = SpendsAnotherFirst("cheap-model", meanwhile)
    dear = OpenAIResponder("dear-model")
    with serve_asgi(cheap) as cheap_url, serve_asgi(dear) as dear_url:
        config = providers_file(
            tmp_path,
            provider_toml("cheap", f"{cheap_url}/v1", "cheap-model", "pace"),
            provider_toml(
                "dear",
                f"{dear_url}/v1",
                "dear-model",
                "pace",
                input_per_1k=2.0,
                model_lines="rpm = 1",
            ),
        )
        router = start_router(ROUTER_PROVIDERS_FILE=config, ROUTER_RETRIES="0")
        cheap.router_url = router.url
        answer = httpx.post(
            f"{router.url}/v1/chat/completions", json=ask("pace", strategy="cost"), timeout=30
        )

    assert cheap.meanwhile_status == 200
    assert len(dear.requests) == 1  # the other call's
    assert answer.status_code == 503
    assert "dear/dear-model: at its rate limit" in answer.json()["detail"]


def test_a_retry_is_not_made_once_the_minute_is_used_up(start_router: Any, tmp_path: Path) -> None:
    """``cheap`` (``rpm = 2``) fails its first call with a 500 after another call (served by
    it) used up its minute: the router does not ask it again (it would retry a 500
    otherwise), and ``dear`` serves the call, the reason saying why."""
    meanwhile = {**ask("pace"), "capability": None, "model": "cheap-model"}
    cheap = SpendsAnotherFirst("cheap-model", meanwhile)
    dear = OpenAIResponder("dear-model")
    with serve_asgi(cheap) as cheap_url, serve_asgi(dear) as dear_url:
        config = two_providers(tmp_path, cheap_url, dear_url, "rpm = 2")
        router = start_router(ROUTER_PROVIDERS_FILE=config, ROUTER_RETRIES="2")
        cheap.router_url = router.url
        answer = httpx.post(
            f"{router.url}/v1/chat/completions", json=ask("pace", strategy="cost"), timeout=30
        )

    assert cheap.meanwhile_status == 200
    assert len(cheap.requests) == 2  # the call's first attempt, and the other call
    assert answer.status_code == 200
    assert answer.headers["x-pas-candidate"] == "dear/dear-model"
    assert "not asked again: at its rate limit" in answer.headers["x-pas-fallback-reasons"]
