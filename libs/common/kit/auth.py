"""Bearer-token guards: every write needs the service's token, unless a handler opts out.

``create_service`` installs :func:`require_token_for_writes` on the whole app, so a POST, PUT,
PATCH or DELETE handler is guarded from the moment it exists; reads (GET, HEAD, OPTIONS) stay
open. A write that changes nothing and spends nothing (a query that needs a JSON body) opts out
where it is declared, with its reason::

    @post("/discover", opt=open_write("a query with a JSON body; reads the catalog"))

``tests/test_route_guards.py`` walks every service's routes and holds the opt-outs to a short,
named allow-list. :func:`require_write_token` is the check itself, for a handler that needs the
token whatever its method.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler

WRITE_TOKEN_STATE_KEY = "pas_write_token"  # noqa: S105  (a state key, not a secret)
OPEN_WRITE_OPT = "pas_open_write"
"""Key of a handler's ``opt`` that exempts it from the token; its value says why."""
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def open_write(reason: str) -> dict[str, Any]:
    """``opt`` for a write handler that anyone may call: a non-empty reason is required."""
    if not reason.strip():
        raise ValueError("an open write needs its reason")
    return {OPEN_WRITE_OPT: reason}


def open_write_reason(route_handler: BaseRouteHandler) -> str | None:
    """Why this handler is exempt from the token, or None when it is not."""
    reason = route_handler.opt.get(OPEN_WRITE_OPT)
    return reason if isinstance(reason, str) and reason else None


def _check_token(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
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


# Both guards are coroutines: Litestar runs a plain function guard in a worker thread, a cost
# every request would pay for a check that never blocks.


async def require_write_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Refuse the request unless it carries the app's token; open when none is configured.

    The token is set by ``create_service`` (the service's ``<PREFIX>TOKEN``, else
    ``PAS_TOKEN``); it is compared in constant time and never logged.
    """
    _check_token(connection)


async def require_token_for_writes(
    connection: ASGIConnection[Any, Any, Any, Any], route_handler: BaseRouteHandler
) -> None:
    """The app-wide guard: :func:`require_write_token` for every write method, unless the
    handler was declared with :func:`open_write`."""
    if connection.scope.get("method") in WRITE_METHODS and open_write_reason(route_handler) is None:
        _check_token(connection)
