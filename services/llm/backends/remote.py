"""Shared by the backends that reach a model server over HTTP: error mapping and timeouts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from libs.common.errors import BackendTimeout, BackendUnavailable, InvalidRequest


@asynccontextmanager
async def backend_call(server: str, url: str, timeout_s: float) -> AsyncIterator[None]:
    """Turn httpx failures into PAS errors that name the server and what to check."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise BackendTimeout(
            f"{server} at {url} did not answer within {timeout_s:g}s ({type(exc).__name__})"
        ) from exc
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"{server} at {url} is not reachable: {type(exc).__name__}: {exc}"
        ) from exc


async def raise_for_backend_status(server: str, response: httpx.Response) -> None:
    if response.is_success:
        return
    body = (await response.aread()).decode(errors="replace")[:500]
    message = f"{server} answered {response.status_code}: {body}"
    if response.status_code in (400, 422):
        raise InvalidRequest(message)
    raise BackendUnavailable(message)
