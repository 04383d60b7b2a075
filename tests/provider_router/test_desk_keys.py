"""Desk keys (``ROUTER_KEYS_FILE``): a token per desk, each with what it may ask, a daily
budget and a pace, its spend told apart; the router's own token stays unlimited. The keys are
made by ``pas key new``, as an operator makes them.

The provider is OpenAI, played by a fake speaking its chat-completions wire format
(tests/support/openai_responder.py): each answer is 11 prompt and 5 completion tokens, so
0.016 USD at 1 USD per 1k tokens.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog.testing

from libs.common.errors import SettingsError
from services.provider_router import provider_router
from services.provider_router.desk_keys import load_keys
from services.provider_router.store import SQLiteSpendStore
from services.provider_router.store_rows import UsageRecord, utc_day
from tests.cli.conftest import pas
from tests.provider_router.conftest import ask, provider_toml, providers_file
from tests.support.asgi_server import serve_asgi
from tests.support.metrics_text import sample_value
from tests.support.openai_responder import OpenAIResponder

ROUTER_TOKEN = "operator-token"


def new_key(name: str, *options: str) -> tuple[str, str]:
    """``pas key new``: the token and the keys-file entry it prints."""
    made = pas("key", "new", name, *options, env={})
    assert made.returncode == 0, made.stderr
    token = re.search(r"^  (pas-\S+)$", made.stdout, re.MULTILINE)
    assert token is not None, made.stdout
    return token.group(1), made.stdout[made.stdout.index("[[keys]]") :]


def keys_file(tmp_path: Path, *entries: str) -> str:
    path = tmp_path / "keys.toml"
    path.write_text("\n".join(entries))
    return str(path)


def two_models(tmp_path: Path, url: str) -> str:
    """One OpenAI provider: ``sum-model`` for summarize, ``ext-model`` for extract."""
    return providers_file(
        tmp_path,
        f"""
[[providers]]
name = "openai"
base_url = "{url}/v1"
[[providers.models]]
name = "sum-model"
capabilities = ["summarize"]
input_per_1k = 1.0
output_per_1k = 1.0
[[providers.models]]
name = "ext-model"
capabilities = ["extract"]
input_per_1k = 1.0
output_per_1k = 1.0
""",
    )


async def key_rows(router: Any) -> dict[str, dict[str, Any]]:
    """``GET /keys`` as the router's token reads it, by key."""
    rows = (await router.get("/keys", headers=bearer(ROUTER_TOKEN))).json()["keys"]
    return {row["name"]: row for row in rows}


async def polling_router(make_router: Any, providers: str, keys: str) -> Any:
    """A router on these files, looking at them every 50 ms."""
    return await make_router(
        use_registry=False,
        providers_file=providers,
        keys_file=keys,
        token=ROUTER_TOKEN,
        files_poll_s=0.05,
    )


async def keys_file_refused(router: Any) -> str:
    """The router's metrics once it refused a changed keys file (or after 10 s)."""
    for _ in range(200):
        metrics: str = (await router.get("/metrics")).text
        if sample_value(metrics, "pas_router_file_reloads_total", file="keys", outcome="refused"):
            break
        await asyncio.sleep(0.05)
    return metrics


async def keyed_router(make_router: Any, tmp_path: Path, url: str, *entries: str) -> Any:
    """A router on ``two_models``, its keys ``entries``, its own token ``ROUTER_TOKEN``."""
    return await make_router(
        use_registry=False,
        providers_file=two_models(tmp_path, url),
        keys_file=keys_file(tmp_path, *entries),
        token=ROUTER_TOKEN,
    )


def rewrite(path: str, change: Callable[[str], str]) -> None:
    Path(path).write_text(change(Path(path).read_text()))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def openai_fake() -> Any:
    responder = OpenAIResponder("sum-model")
    with serve_asgi(responder) as url:
        yield responder, url


async def test_a_keys_token_or_the_routers_is_taken_and_spend_is_told_apart(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    responder, url = openai_fake
    rates, rates_entry = new_key("rates-desk")
    router = await keyed_router(make_router, tmp_path, url, rates_entry)
    chat = "/v1/chat/completions"

    nobody = await router.post(chat, json=ask("summarize"))
    stranger = await router.post(chat, json=ask("summarize"), headers=bearer("pas-guessed"))
    desk = await router.post(chat, json=ask("summarize"), headers=bearer(rates))
    operator = await router.post(chat, json=ask("summarize"), headers=bearer(ROUTER_TOKEN))
    costs = (await router.get("/costs", headers=bearer(ROUTER_TOKEN))).json()

    assert (nobody.status_code, stranger.status_code) == (401, 401)
    assert "a desk key's token" in stranger.json()["detail"]
    assert (desk.status_code, operator.status_code) == (200, 200)
    assert len(responder.requests) == 2
    assert costs["by_key"]["rates-desk"]["requests"] == 1
    assert costs["by_key"]["rates-desk"]["cost_usd"] == pytest.approx(0.016)
    assert costs["by_key"][""]["requests"] == 1
    assert costs["total"]["requests"] == 2


async def test_a_key_asks_only_what_it_may(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    responder, url = openai_fake
    token, entry = new_key("research", "--capability", "summarize")
    router = await keyed_router(make_router, tmp_path, url, entry)
    headers = bearer(token)

    other = await router.post("/v1/chat/completions", json=ask("extract"), headers=headers)
    planned = await router.post("/route", json={"capability": "extract"}, headers=headers)
    by_model = await router.post(
        "/v1/chat/completions",
        json={**ask("summarize"), "capability": None, "model": "sum-model"},
        headers=headers,
    )
    own = await router.post("/v1/chat/completions", json=ask("summarize"), headers=headers)

    for refused in (other, planned):
        assert refused.status_code == 403
        assert "key 'research' may ask summarize, not extract" in refused.json()["detail"]
    assert (by_model.status_code, own.status_code) == (200, 200)
    assert len(responder.requests) == 2


async def test_a_key_past_its_daily_budget_waits_for_the_next_day_and_others_go_on(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    responder, url = openai_fake
    spender, spender_entry = new_key("equities", "--budget", "0.02")
    other, other_entry = new_key("rates")
    router = await keyed_router(make_router, tmp_path, url, spender_entry, other_entry)
    chat = "/v1/chat/completions"

    # 0.016 USD an answer: the second still starts under 0.02, the third does not.
    spent = [
        (await router.post(chat, json=ask("summarize"), headers=bearer(spender))).status_code
        for _ in range(2)
    ]
    refused = await router.post(chat, json=ask("summarize"), headers=bearer(spender))
    others = await router.post(chat, json=ask("summarize"), headers=bearer(other))
    metrics = (await router.get("/metrics")).text
    keys = await key_rows(router)

    assert spent == [200, 200]
    assert refused.status_code == 429
    assert "key 'equities' spent its daily budget (0.0320 of 0.02 USD)" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 86_400
    assert others.status_code == 200
    assert len(responder.requests) == 3
    assert sample_value(metrics, "pas_router_key_spent_today_usd", key="equities") == (
        pytest.approx(0.032)
    )
    assert sample_value(metrics, "pas_router_key_daily_budget_usd", key="equities") == 0.02
    assert keys["equities"]["spent_today_usd"] == pytest.approx(0.032)
    assert keys["equities"]["refused_now"] == "daily budget spent"
    assert (keys["rates"]["refused_now"], keys["rates"]["daily_budget_usd"]) == (None, None)


async def test_a_keys_requests_a_minute_are_kept(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    responder, url = openai_fake
    token, entry = new_key("quant", "--rpm", "2")
    router = await keyed_router(make_router, tmp_path, url, entry)
    chat = "/v1/chat/completions"

    answered = [
        (await router.post(chat, json=ask("summarize"), headers=bearer(token))).status_code
        for _ in range(2)
    ]
    paced = await router.post(chat, json=ask("summarize"), headers=bearer(token))
    operator = await router.post(chat, json=ask("summarize"), headers=bearer(ROUTER_TOKEN))
    [row] = (await router.get("/keys", headers=bearer(ROUTER_TOKEN))).json()["keys"]

    assert answered == [200, 200]
    assert paced.status_code == 429
    assert (
        "key 'quant' is at its rate limit: 2 requests in the last minute (rpm 2)"
        in (paced.json()["detail"])
    )
    assert 1 <= int(paced.headers["retry-after"]) <= 60
    assert (row["name"], row["rpm"], row["requests_last_minute"]) == ("quant", 2, 2)
    assert "rpm 2" in row["refused_now"]
    assert operator.status_code == 200
    assert len(responder.requests) == 3


async def test_a_key_is_routed_only_to_its_providers(make_router: Any, tmp_path: Path) -> None:
    """summarize from the cheap ``openai`` and the firm's own, dearer ``onprem`` server: a key
    kept to ``onprem`` is served there, one kept to PAS's own LLM services (``local``, none
    running here) is refused before anything is sent, one kept to nothing goes the cheap way."""
    cheap, own = OpenAIResponder("sum-model"), OpenAIResponder("own-model")
    with serve_asgi(cheap) as cheap_url, serve_asgi(own) as own_url:
        providers = providers_file(
            tmp_path,
            provider_toml("openai", f"{cheap_url}/v1", "sum-model", "summarize"),
            provider_toml("onprem", f"{own_url}/v1", "own-model", "summarize", input_per_1k=5.0),
        )
        kept, kept_entry = new_key("research", "--provider", "onprem")
        mnpi, mnpi_entry = new_key("deals", "--provider", "local")
        free, free_entry = new_key("rates")
        router = await make_router(
            use_registry=False,
            providers_file=providers,
            keys_file=keys_file(tmp_path, kept_entry, mnpi_entry, free_entry),
            token=ROUTER_TOKEN,
        )
        chat = "/v1/chat/completions"

        served = await router.post(chat, json=ask("summarize"), headers=bearer(kept))
        planned = await router.post(
            "/route", json={"capability": "summarize"}, headers=bearer(kept)
        )
        refused = await router.post(chat, json=ask("summarize"), headers=bearer(mnpi))
        by_model = await router.post(
            chat,
            json={**ask("summarize"), "capability": None, "model": "sum-model"},
            headers=bearer(kept),
        )
        cheapest = await router.post(chat, json=ask("summarize"), headers=bearer(free))
        keys = await key_rows(router)

    assert served.status_code == 200
    assert served.headers["x-pas-provider"] == "onprem"
    considered = {c["id"]: c for c in planned.json()["considered"]}
    assert planned.json()["provider"] == "onprem"
    assert considered["openai/sum-model"] == {
        "id": "openai/sum-model",
        "usable": False,
        "reason": "not among the providers key 'research' may be routed to",
    }
    assert refused.status_code == 403
    assert (
        "key 'deals' may be routed to local; what it asks is offered by onprem, openai only"
        in refused.json()["detail"]
    )
    assert by_model.status_code == 403
    assert "offered by openai only" in by_model.json()["detail"]
    assert cheapest.headers["x-pas-provider"] == "openai"
    assert (len(own.requests), len(cheap.requests)) == (1, 1)
    assert (keys["research"]["providers"], keys["rates"]["providers"]) == (["onprem"], None)


async def test_a_desk_is_never_answered_from_another_desks_request(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    """With the answer cache on, the same request from two desks makes two calls: a hit would
    tell one desk what another asked (a Chinese wall between research and trading, say)."""
    responder, url = openai_fake
    research, research_entry = new_key("research")
    trading, trading_entry = new_key("trading")
    router = await make_router(
        use_registry=False,
        providers_file=two_models(tmp_path, url),
        keys_file=keys_file(tmp_path, research_entry, trading_entry),
        token=ROUTER_TOKEN,
        cache_ttl_s=60,
    )
    chat = "/v1/chat/completions"

    outcomes = [
        (await router.post(chat, json=ask("summarize"), headers=bearer(token))).headers[
            "x-pas-cache"
        ]
        for token in (research, trading, research, trading, ROUTER_TOKEN)
    ]
    costs = (await router.get("/costs", headers=bearer(ROUTER_TOKEN))).json()

    assert outcomes == ["miss", "miss", "hit", "hit", "miss"]
    assert len(responder.requests) == 3
    assert costs["by_key"]["research"]["requests"] == 1
    assert costs["by_key"]["trading"]["requests"] == 1


async def test_a_key_past_its_expiry_is_refused_and_one_before_it_answers(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    responder, url = openai_fake
    current, current_entry = new_key("project", "--days", "30")
    lapsed, lapsed_entry = new_key("contractor", "--days", "1")
    # The operator moved the contractor's expiry to an hour ago.
    an_hour_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    lapsed_entry = re.sub(
        r"expires = \S+", f"expires = {an_hour_ago.strftime('%Y-%m-%dT%H:%M:%SZ')}", lapsed_entry
    )
    router = await keyed_router(make_router, tmp_path, url, current_entry, lapsed_entry)
    chat = "/v1/chat/completions"

    refused = await router.post(chat, json=ask("summarize"), headers=bearer(lapsed))
    answered = await router.post(chat, json=ask("summarize"), headers=bearer(current))
    keys = await key_rows(router)
    metrics = (await router.get("/metrics")).text

    assert refused.status_code == 401
    assert f"key 'contractor' expired at {an_hour_ago.isoformat()}" in refused.json()["detail"]
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert refused.json()["request_id"] == refused.headers["x-request-id"]  # logged as one
    assert answered.status_code == 200
    assert len(responder.requests) == 1
    assert keys["contractor"]["refused_now"] == "expired"
    assert keys["project"]["refused_now"] is None
    in_30_days = time.time() + 30 * 86_400
    assert datetime.fromisoformat(keys["project"]["expires"]).timestamp() == pytest.approx(
        in_30_days, abs=120
    )
    assert sample_value(
        metrics, "pas_router_key_expiry_timestamp_seconds", key="project"
    ) == pytest.approx(in_30_days, abs=120)


def test_pas_key_new_refuses_an_expiry_that_would_never_work() -> None:
    past = pas("key", "new", "fx", "--expires", "2020-01-01", env={})
    both = pas("key", "new", "fx", "--expires", "2099-01-01", "--days", "3", env={})
    later = pas("key", "new", "fx", "--expires", "2099-01-31", env={})

    assert past.returncode == 2
    assert "2020-01-01T00:00:00+00:00 is past: the key would never work" in past.stderr
    assert both.returncode == 2
    assert "give --expires or --days, not both" in both.stderr
    assert later.returncode == 0, later.stderr
    assert "expires = 2099-01-31T00:00:00Z" in later.stdout


def test_a_bad_keys_file_is_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    token, entry = new_key("fx")
    twice = keys_file(tmp_path, entry, entry.replace('name = "fx"', 'name = "fx2"'))
    (tmp_path / "plain.toml").write_text(f'[[keys]]\nname = "fx"\nsha256 = "{token}"\n')

    with pytest.raises(SettingsError, match="two keys have sha256"):
        load_keys(twice)
    with pytest.raises(SettingsError, match=r"sha256"):
        load_keys(str(tmp_path / "plain.toml"))  # a token where its hash belongs
    (tmp_path / "naive.toml").write_text(entry + "expires = 2027-01-31T00:00:00\n")
    with pytest.raises(SettingsError, match=r"timezone component - at `\$.keys\[0\].expires`"):
        load_keys(str(tmp_path / "naive.toml"))  # a time without its offset
    example = load_keys(str(Path(__file__).parents[2] / "deploy" / "keys.example.toml"))
    assert [key.name for key in example] == ["rates-desk", "research"]


async def test_a_database_from_before_desk_keys_takes_them(tmp_path: Path) -> None:
    """The spend table as it was before keys (no desk_key column), with a record in it."""
    path = tmp_path / "router.db"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE pas_router_spend (at REAL NOT NULL, provider TEXT NOT NULL, "
            "model TEXT NOT NULL, capability TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, "
            "completion_tokens INTEGER NOT NULL, cost_usd REAL NOT NULL)"
        )
        old.execute("INSERT INTO pas_router_spend VALUES (?, 'openai', 'm', 'c', 11, 5, 0.016)",
                    (time.time(),))  # fmt: skip
    store = SQLiteSpendStore(str(path))
    await store.open()
    await store.append([UsageRecord(time.time(), "openai", "m", "c", 11, 5, 0.016, key="fx")])
    groups = await store.spend_since(0)
    by_key = await store.keys_spent_on(utc_day(time.time()))
    await store.close()

    assert sorted((g.key, g.requests) for g in groups) == [("", 1), ("fx", 1)]
    assert by_key == {"fx": pytest.approx(0.016)}


async def test_changed_files_are_taken_without_a_restart_and_a_broken_one_is_refused(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    """A desk key added and one removed, a price changed: taken within the poll; then a
    keys file with a TOML error: refused, the keys before it kept."""
    _, url = openai_fake
    old, old_entry = new_key("old-desk")
    new, new_entry = new_key("new-desk")
    keys = keys_file(tmp_path, old_entry)
    providers = two_models(tmp_path, url)
    router = await polling_router(make_router, providers, keys)
    chat = "/v1/chat/completions"

    async def answers(token: str) -> int:
        answer = await router.post(chat, json=ask("summarize"), headers=bearer(token))
        return int(answer.status_code)

    async def price_of(model: str) -> float:
        candidates = (await router.get("/providers")).json()["candidates"]
        [row] = [c for c in candidates if c["model"] == model]
        return float(row["input_per_1k"])

    before = (await answers(old), await answers(new))
    rewrite(keys, lambda _: new_entry)
    rewrite(providers, lambda text: text.replace("input_per_1k = 1.0", "input_per_1k = 3.0", 1))
    for _ in range(200):
        if await answers(new) == 200 and await price_of("sum-model") == 3.0:
            break
        await asyncio.sleep(0.05)
    after = (await answers(old), await answers(new))
    rewrite(keys, lambda text: text + "\n[[keys]\n")  # a TOML error
    metrics = await keys_file_refused(router)
    kept = await answers(new)

    assert before == (200, 401)
    assert after == (401, 200)
    assert await price_of("sum-model") == 3.0
    assert sample_value(metrics, "pas_router_file_reloads_total", file="keys", outcome="taken") == 1
    assert kept == 200


async def test_a_desk_reads_its_own_standing_and_only_the_router_reads_every_desks(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    """``GET /keys`` and ``GET /costs`` tell every desk's spend: a desk key's token sees its own
    row of ``/keys`` and gets a 403 from ``/costs``; the router's token sees all; no token, a
    401."""
    _, url = openai_fake
    fx, fx_entry = new_key("fx-desk")
    _, rates_entry = new_key("rates-desk")
    router = await keyed_router(make_router, tmp_path, url, fx_entry, rates_entry)

    own = await router.get("/keys", headers=bearer(fx))
    every = await router.get("/keys", headers=bearer(ROUTER_TOKEN))
    anonymous = await router.get("/keys")
    desk_costs = await router.get("/costs", headers=bearer(fx))
    router_costs = await router.get("/costs", headers=bearer(ROUTER_TOKEN))
    anonymous_costs = await router.get("/costs")

    assert [row["name"] for row in own.json()["keys"]] == ["fx-desk"]
    assert sorted(row["name"] for row in every.json()["keys"]) == ["fx-desk", "rates-desk"]
    assert (anonymous.status_code, anonymous_costs.status_code) == (401, 401)
    assert desk_costs.status_code == 403
    assert "key 'fx-desk' is a desk's; this is for the router's token" in desk_costs.text
    assert router_costs.status_code == 200


async def test_desk_keys_without_a_router_token_say_what_is_missing(
    make_router: Any, tmp_path: Path, openai_fake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Desk keys and no ``ROUTER_TOKEN``: the desks are served, and nobody may read every
    desk's spend; the router warns when it starts, and the 403 and the 401 say that no router
    token is set rather than ask for it."""
    _, url = openai_fake
    fx, fx_entry = new_key("fx-desk")
    with structlog.testing.capture_logs() as logs:
        # A logger made inside the capture (a configured app caches the module's own).
        monkeypatch.setattr(provider_router, "logger", structlog.get_logger("pas.router"))
        router = await make_router(
            use_registry=False,
            providers_file=two_models(tmp_path, url),
            keys_file=keys_file(tmp_path, fx_entry),
        )

    asked = await router.post("/v1/chat/completions", json=ask("summarize"), headers=bearer(fx))
    desk_costs = await router.get("/costs", headers=bearer(fx))
    anonymous = await router.get("/costs")

    assert asked.status_code == 200
    assert desk_costs.status_code == 403
    assert "for the router's token, which is not set (ROUTER_TOKEN)" in desk_costs.text
    assert anonymous.status_code == 401
    assert "a desk key's token (ROUTER_KEYS_FILE)" in anonymous.text
    assert "or the router's" not in anonymous.text
    assert [line["keys"] for line in logs if "without ROUTER_TOKEN" in line["event"]] == [1]


async def test_a_key_kept_to_a_provider_the_router_has_not_is_refused(
    make_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    """A misspelt provider would make every request of the key a 403: a router does not start
    on such a keys file, and a running one refuses it (the keys before it kept)."""
    _, url = openai_fake
    _, misspelt = new_key("fx-desk", "--provider", "opnai", "--provider", "local")
    token, good = new_key("fx-desk", "--provider", "openai")
    providers = two_models(tmp_path, url)

    with pytest.raises(SettingsError) as raised:
        await make_router(
            use_registry=False, providers_file=providers, keys_file=keys_file(tmp_path, misspelt)
        )
    keys = keys_file(tmp_path, good)
    router = await polling_router(make_router, providers, keys)
    rewrite(keys, lambda _: misspelt)
    metrics = await keys_file_refused(router)
    kept = await router.post("/v1/chat/completions", json=ask("summarize"), headers=bearer(token))

    assert str(raised.value).endswith(
        "key 'fx-desk' names opnai: no such provider (known: local, openai)"
    )
    assert sample_value(metrics, "pas_router_file_reloads_total", file="keys", outcome="refused")
    assert kept.status_code == 200


def test_pas_key_list_shows_where_each_key_stands(
    start_router: Any, tmp_path: Path, openai_fake: Any
) -> None:
    """A real router process, its keys as ``pas key list`` shows them."""
    _, url = openai_fake
    token, entry = new_key(
        "fx-desk",
        *("--budget", "5", "--capability", "summarize", "--provider", "openai"),
        *("--expires", "2099-01-31"),
    )
    _, idle = new_key("idle-desk")
    router = start_router(
        ROUTER_PROVIDERS_FILE=two_models(tmp_path, url),
        ROUTER_KEYS_FILE=keys_file(tmp_path, entry, idle),
        ROUTER_TOKEN=ROUTER_TOKEN,
    )
    answered = httpx.post(
        f"{router.url}/v1/chat/completions", json=ask("summarize"), headers=bearer(token)
    )

    listed = pas("key", "list", env={"ROUTER_URL": router.url, "ROUTER_TOKEN": ROUTER_TOKEN})
    as_desk = pas("key", "list", env={"ROUTER_URL": router.url, "ROUTER_TOKEN": token})
    anonymous = pas("key", "list", env={"ROUTER_URL": router.url})

    assert answered.status_code == 200
    assert listed.returncode == 0, listed.stderr
    [fx] = [line for line in listed.stdout.splitlines() if "fx-desk" in line]
    assert "summarize of openai" in fx
    assert "0.0160 / 5.0" in fx
    assert "1 req / -" in fx
    assert "2099-01-31 00:00 UTC" in fx
    [other] = [line for line in listed.stdout.splitlines() if "idle-desk" in line]
    # A desk's own token lists its own key only.
    assert as_desk.returncode == 0, as_desk.stderr
    assert "fx-desk" in as_desk.stdout
    assert "idle-desk" not in as_desk.stdout
    assert anonymous.returncode == 1
    assert "lists its keys to its own token: set ROUTER_TOKEN (or PAS_TOKEN)" in anonymous.stderr
    assert "anything" in other
    assert "0.0000 / -" in other
    assert "never" in other
