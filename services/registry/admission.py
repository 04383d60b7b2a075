"""What a registration must satisfy beyond its schema: rules a JSON Schema cannot state."""

from __future__ import annotations

import httpx

_HIGHEST_PORT = 65_535


def endpoint_problem(endpoint: str) -> str | None:
    """Why ``endpoint`` cannot be called (``None`` when it can), as the active checks would.

    The schema checks the scheme and the host's characters; httpx is the judge of the rest,
    since it is what calls the endpoint. A port out of range parses, then fails every request.
    """
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        return f"not a URL httpx can call: {exc}"
    if not url.host:
        return "names no host"
    if url.port is not None and not 1 <= url.port <= _HIGHEST_PORT:
        return f"port {url.port} is outside 1-{_HIGHEST_PORT}"
    return None
