"""Background loops that keep the catalog honest: TTL reaping and optional active checks."""

from __future__ import annotations

import asyncio

import httpx
import structlog

from services.registry.catalog import Catalog

logger = structlog.get_logger("pas.registry.liveness")

_ACTIVE_CHECK_CONCURRENCY = 32


async def reap_forever(catalog: Catalog, interval_s: float) -> None:
    while True:
        try:
            await catalog.reap()
        except Exception:
            # A store hiccup must not stop liveness for good; the next tick retries.
            logger.exception("reaping the catalog failed")
        await asyncio.sleep(interval_s)


async def check_agent(http: httpx.AsyncClient, endpoint: str) -> str | None:
    """GET ``endpoint/health``: ``None`` when it answers 2xx, else why not."""
    url = f"{endpoint.rstrip('/')}/health"
    try:
        response = await http.get(url)
    except Exception as exc:
        # Any failure is the agent's, never the round's. Not only httpx.HTTPError: an endpoint
        # httpx cannot call (stored before the registry refused such) raises InvalidURL, a
        # port out of range an ExceptionGroup from anyio.
        return f"GET {url} failed: {type(exc).__name__}: {exc}".rstrip(": ")
    if response.is_success:
        return None
    return f"GET {url} answered {response.status_code}"


async def check_agents_forever(
    catalog: Catalog, http: httpx.AsyncClient, interval_s: float
) -> None:
    limit = asyncio.Semaphore(_ACTIVE_CHECK_CONCURRENCY)
    while True:
        await check_round(catalog, http, limit)
        await asyncio.sleep(interval_s)


async def check_round(catalog: Catalog, http: httpx.AsyncClient, limit: asyncio.Semaphore) -> None:
    """Check every REST agent once, ``limit`` at a time, and record each result against the
    registration that was checked."""

    async def check_one(agent_id: str, endpoint: str) -> None:
        registration = catalog.registration(agent_id)
        async with limit:
            failure = await check_agent(http, endpoint)
        await catalog.record_check(agent_id, registration, failure)

    targets = [(a.agent_id, a.endpoint) for a in catalog.all() if a.transport == "rest"]
    # gather, not a TaskGroup: one check that fails (a store hiccup while recording it) must
    # not cancel the checks of every other agent in the round.
    outcomes = await asyncio.gather(
        *(check_one(agent_id, endpoint) for agent_id, endpoint in targets),
        return_exceptions=True,
    )
    for (agent_id, _), outcome in zip(targets, outcomes, strict=True):
        if isinstance(outcome, Exception):
            logger.error("active health check failed", agent_id=agent_id, error=repr(outcome))
