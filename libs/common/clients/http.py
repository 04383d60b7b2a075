"""The HTTP client a PAS client library talks to another PAS service with."""

from __future__ import annotations

import httpx


def service_http(
    base_url: str,
    *,
    token: str | None,
    timeout_s: float,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An httpx client on ``base_url`` that sends ``Authorization: Bearer <token>`` when a token
    is given (the services' write endpoints need it when theirs is set)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s, transport=transport
    )
