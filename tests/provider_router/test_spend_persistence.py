"""Spend and daily budgets outlive a restart of the router and are shared by routers on one
database, and so are a provider's rate limits and the pauses it asks for: real router
processes, stopped with SIGTERM as an operator would, on SQLite and (when
``PAS_TEST_POSTGRES_DSN`` names a database the tests may write to) on PostgreSQL.

The provider is OpenAI, played by a fake speaking its chat-completions wire format; each
answer is 11 prompt and 5 completion tokens, so 0.016 USD at 1 USD per 1k tokens.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.provider_router.conftest import ask, one_provider, wait_until
from tests.support.asgi_server import serve_asgi
from tests.support.openai_responder import OpenAIResponder

PG_DSN = os.environ.get("PAS_TEST_POSTGRES_DSN", "")
ONE_ANSWER_USD = 0.016


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=[
                pytest.mark.postgres,
                pytest.mark.skipif(
                    not PG_DSN, reason="set PAS_TEST_POSTGRES_DSN to test the PostgreSQL store"
                ),
            ],
        ),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/spend.db"
    import psycopg  # noqa: PLC0415

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS pas_router_spend, pas_router_daily_spend, "
            "pas_router_key_daily_spend, pas_router_pace, pas_router_pause"
        )
    return PG_DSN


@pytest.fixture
def openai_fake() -> Iterator[tuple[OpenAIResponder, str]]:
    responder = OpenAIResponder("gpt-fake")
    with serve_asgi(responder) as url:
        yield responder, url


def chat(router: Any) -> httpx.Response:
    return httpx.post(f"{router.url}/v1/chat/completions", json=ask("summarize"), timeout=30)


def provider_row(router: Any) -> dict[str, Any]:
    [row] = httpx.get(f"{router.url}/providers").json()["candidates"]
    return dict(row)


def costs(router: Any) -> dict[str, Any]:
    report: dict[str, Any] = httpx.get(f"{router.url}/costs").json()
    return report


def test_spend_survives_a_restart(
    start_router: Any, database_url: str, openai_fake: Any, tmp_path: Path
) -> None:
    """Writes wait far longer than the test: only the graceful shutdown stores the spend."""
    _, url = openai_fake
    env = {
        "ROUTER_DATABASE_URL": database_url,
        "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, url, "openai", "summarize"),
        "ROUTER_SPEND_SYNC_S": "3600",
    }
    first = start_router(**env, LOG_LEVEL="INFO")  # to read that it shut down gracefully
    served = [chat(first).status_code for _ in range(2)]
    before = costs(first)
    first.stop()

    second = start_router(**env)
    after = costs(second)
    row = provider_row(second)

    assert served == [200, 200]
    assert "Application shutdown complete." in first.logs()
    assert before["by_provider"]["openai"]["requests"] == 2
    assert after == before
    assert row["spent_today_usd"] == 2 * ONE_ANSWER_USD


def test_a_spent_budget_stays_spent_after_a_restart(
    start_router: Any, database_url: str, openai_fake: Any, tmp_path: Path
) -> None:
    responder, url = openai_fake
    env = {
        "ROUTER_DATABASE_URL": database_url,
        "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, url, "openai", "summarize", 0.01),
    }
    first = start_router(**env)
    spending = chat(first)
    refused_before = chat(first)
    first.stop()

    second = start_router(**env)
    row = provider_row(second)
    refused_after = chat(second)

    assert spending.status_code == 200
    assert refused_before.status_code == 503
    assert row["available"] is False
    assert row["spent_today_usd"] == ONE_ANSWER_USD
    assert "daily budget spent" in row["unavailable_reason"]
    assert refused_after.status_code == 503
    assert "daily budget spent" in refused_after.json()["detail"]
    assert len(responder.requests) == 1


def test_two_routers_on_one_database_share_spend_and_budgets(
    start_router: Any, database_url: str, openai_fake: Any, tmp_path: Path
) -> None:
    responder, url = openai_fake
    env = {
        "ROUTER_DATABASE_URL": database_url,
        "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, url, "openai", "summarize", 0.01),
        "ROUTER_SPEND_SYNC_S": "0.1",
    }
    one, two = start_router(**env), start_router(**env)

    spending = chat(one)
    seen = wait_until(
        lambda: (row := provider_row(two))["spent_today_usd"] > 0 and row,
        "the second router see the first one's spend",
    )
    refused = chat(two)
    reports = costs(one), costs(two)

    assert spending.status_code == 200
    assert seen["spent_today_usd"] == ONE_ANSWER_USD
    assert seen["available"] is False
    assert refused.status_code == 503
    assert "daily budget spent" in refused.json()["detail"]
    assert reports[0] == reports[1]
    assert reports[1]["by_provider"]["openai"]["requests"] == 1
    assert len(responder.requests) == 1


def test_two_routers_on_one_database_keep_a_providers_rate_limit_together(
    start_router: Any, database_url: str, openai_fake: Any, tmp_path: Path
) -> None:
    """Two requests a minute: one router sends both, the other, having heard, sends none."""
    responder, url = openai_fake
    env = {
        "ROUTER_DATABASE_URL": database_url,
        "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, url, "openai", "summarize", rpm=2),
        "ROUTER_SPEND_SYNC_S": "0.1",
    }
    one, two = start_router(**env), start_router(**env)

    served = [chat(one).status_code for _ in range(2)]
    seen = wait_until(
        lambda: (row := provider_row(two))["requests_last_minute"] == 2 and row,
        "the second router count the first one's requests",
    )
    refused = chat(two)

    assert served == [200, 200]
    assert seen["available"] is False
    assert "at its rate limit: 2 requests in the last minute (rpm 2)" in seen["unavailable_reason"]
    assert refused.status_code == 503
    assert "at its rate limit" in refused.json()["detail"]
    assert len(responder.requests) == 2
    # The first router counts the same minute: its own two, nothing more.
    assert provider_row(one)["requests_last_minute"] == 2


def test_a_pause_a_provider_asked_of_one_router_is_kept_by_the_other(
    start_router: Any, database_url: str, tmp_path: Path
) -> None:
    """A 429 with ``Retry-After: 30`` to one router: the other leaves the provider alone too,
    without asking it."""
    limited = OpenAIResponder(
        "openai",
        reply=(429, b'{"error": {"message": "Rate limit reached", "type": "requests"}}'),
        reply_headers={"retry-after": "30"},
    )
    with serve_asgi(limited) as url:
        env = {
            "ROUTER_DATABASE_URL": database_url,
            "ROUTER_PROVIDERS_FILE": one_provider(tmp_path, url, "openai", "summarize"),
            "ROUTER_SPEND_SYNC_S": "0.1",
        }
        one, two = start_router(**env), start_router(**env)
        asked = chat(one)
        seen = wait_until(
            lambda: (row := provider_row(two))["asked_to_wait_s"] and row,
            "the second router keep the pause the first one was asked for",
        )
        refused = chat(two)

    assert asked.status_code in (429, 503)
    assert 20 < seen["asked_to_wait_s"] <= 30
    assert "asked to wait" in seen["unavailable_reason"]
    assert refused.status_code == 503
    assert "asked to wait" in refused.json()["detail"]
    assert len(limited.requests) == 1
