"""Bearer-token guard for writes and admin endpoints."""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

WRITE_TOKEN_STATE_KEY = "pas_write_token"  # noqa: S105  (a state key, not a secret)


def require_write_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Refuse the request unless it carries the app's token; open when none is configured.

    The token is set by ``create_service(write_token=...)``; it is compared in constant time
    and never logged.
    """
    expected: str | None = connection.app.state.get(WRITE_TOKEN_STATE_KEY)
    if not expected:
        return
    scheme, _sep, presented = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        raise NotAuthorizedException(
            detail="this endpoint needs 'Authorization: Bearer <token>' with the configured token",
            headers={"WWW-Authenticate": 'Bearer realm="pas"'},
        )
