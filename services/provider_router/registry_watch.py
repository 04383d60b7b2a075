"""Keep the local candidates in step with the registry, by its blocking queries."""

from __future__ import annotations

import asyncio

import structlog

from libs.common.clients.registry import RegistryClient
from libs.common.errors import PASError
from services.provider_router.candidates import local_candidates
from services.provider_router.pool import CandidatePool

logger = structlog.get_logger("pas.router.registry")

_WAIT_S = 30.0
_RETRY_MAX_S = 5.0


async def follow_registry(
    client: RegistryClient,
    pool: CandidatePool,
    synced: asyncio.Event,
    *,
    local_token: str | None = None,
) -> None:
    """Forever: wait for the catalog to change, then rebuild the local candidates.

    While the registry is away the last known candidates stay (their circuits still guard
    them), and the watch retries with backoff.
    """
    index: int | None = None
    delay = 0.1
    while True:
        try:
            listing = await client.list_agents(index=index, wait_s=_WAIT_S)
        except PASError as exc:
            logger.warning("registry watch failed; keeping the last candidates", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_S)
            continue
        delay = 0.1
        if listing.index != index:
            candidates = local_candidates(listing.agents, local_token)
            pool.set_local(candidates)
            logger.info(
                "local candidates updated",
                index=listing.index,
                candidates=[c.id for c in candidates],
            )
        index = listing.index
        synced.set()
