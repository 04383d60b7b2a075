"""The router store's rows and the SQL both stores (SQLite, PostgreSQL) run, written once:
a served request's spend record, spend grouped over a window, the days' totals per provider
and per desk key, each router's pace per candidate and second, and the pauses providers ask
for. Placeholders are ``{0}``: ``?`` for SQLite, ``%s`` for psycopg."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import msgspec

from services.provider_router.rate_limits import PaceSecond, Pause


class UsageRecord(msgspec.Struct, frozen=True):
    """One request served: what it cost and who served it (``at``: Unix time)."""

    at: float
    provider: str
    model: str
    capability: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    key: str = ""
    """The desk key that sent it (``desk_keys.py``); empty for the router's own token."""


class SpendGroup(msgspec.Struct, frozen=True):
    """Requests, tokens and USD of one (provider, model, capability, key) over a window."""

    provider: str
    model: str
    capability: str
    key: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


def utc_day(at: float) -> date:
    return datetime.fromtimestamp(at, UTC).date()


def day_totals(
    records: Sequence[UsageRecord], payer: str = "provider"
) -> list[tuple[date, str, float]]:
    """The records' spend per (day, provider), or per (day, desk key) of those a key sent,
    in a fixed order (so writers never deadlock)."""
    totals: dict[tuple[date, str], float] = defaultdict(float)
    for record in records:
        if name := getattr(record, payer):
            totals[utc_day(record.at), name] += record.cost_usd
    return [(day, name, cost) for (day, name), cost in sorted(totals.items())]


def spend_rows(records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
    return [
        (
            r.at,
            r.provider,
            r.model,
            r.capability,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_usd,
            r.key,
        )
        for r in records
    ]


INSERT_SPEND = (
    "INSERT INTO pas_router_spend (at, provider, model, capability, prompt_tokens, "
    "completion_tokens, cost_usd, desk_key) VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})"
)
ADD_KEY_DAY = (
    "INSERT INTO pas_router_key_daily_spend (day, desk_key, cost_usd) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (day, desk_key) "
    "DO UPDATE SET cost_usd = pas_router_key_daily_spend.cost_usd + excluded.cost_usd"
)
GROUPED = (
    "SELECT provider, model, capability, desk_key, COUNT(*), SUM(prompt_tokens), "
    "SUM(completion_tokens), SUM(cost_usd) FROM pas_router_spend WHERE at >= {} "
    "GROUP BY provider, model, capability, desk_key"
)


def group(row: Sequence[Any]) -> SpendGroup:
    provider, model, capability, key, requests, prompt, completion, cost = row
    return SpendGroup(
        str(provider),
        str(model),
        str(capability),
        str(key),
        int(requests),
        int(prompt),
        int(completion),
        float(cost),
    )


def pace_rows(router: str, seconds: Sequence[PaceSecond]) -> list[tuple[Any, ...]]:
    """In a fixed order, so two writers never deadlock."""
    ordered = sorted(seconds, key=lambda s: (s.candidate, s.second))
    return [(router, s.candidate, s.second, s.requests, s.tokens) for s in ordered]


def pause_rows(pauses: Sequence[Pause]) -> list[tuple[Any, ...]]:
    return [(p.candidate, p.until, p.reason) for p in sorted(pauses, key=lambda p: p.candidate)]


PACE_TABLES = (
    "CREATE TABLE IF NOT EXISTS pas_router_pace (router TEXT NOT NULL, candidate TEXT NOT NULL, "
    "at_second BIGINT NOT NULL, requests INTEGER NOT NULL, tokens BIGINT NOT NULL, "
    "PRIMARY KEY (router, candidate, at_second))",
    "CREATE INDEX IF NOT EXISTS pas_router_pace_second ON pas_router_pace (at_second)",
    "CREATE TABLE IF NOT EXISTS pas_router_pause (candidate TEXT PRIMARY KEY, "
    "ends_at DOUBLE PRECISION NOT NULL, reason TEXT NOT NULL)",
)
ADD_PACE = (
    "INSERT INTO pas_router_pace (router, candidate, at_second, requests, tokens) "
    "VALUES ({0}, {0}, {0}, {0}, {0}) ON CONFLICT (router, candidate, at_second) DO UPDATE SET "
    "requests = pas_router_pace.requests + excluded.requests, "
    "tokens = pas_router_pace.tokens + excluded.tokens"
)
ADD_PAUSE = (
    "INSERT INTO pas_router_pause (candidate, ends_at, reason) VALUES ({0}, {0}, {0}) "
    "ON CONFLICT (candidate) DO UPDATE SET ends_at = excluded.ends_at, reason = excluded.reason "
    "WHERE excluded.ends_at > pas_router_pause.ends_at"
)
OTHERS_PACE = (
    "SELECT candidate, SUM(requests), SUM(tokens) FROM pas_router_pace "
    "WHERE at_second >= {0} AND router <> {0} GROUP BY candidate"
)
PAUSES = "SELECT candidate, ends_at, reason FROM pas_router_pause WHERE ends_at > {0}"


def others(
    paced: Sequence[Sequence[Any]], paused: Sequence[Sequence[Any]]
) -> tuple[dict[str, tuple[int, int]], list[Pause]]:
    return (
        {str(c): (int(r), int(t)) for c, r, t in paced},
        [Pause(str(c), float(u), str(why)) for c, u, why in paused],
    )
