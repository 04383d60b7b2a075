"""Bearer tokens: every write needs the service's token, unless a handler opts out.

``create_service`` installs :class:`WriteTokenMiddleware` on every route once the service has a
token, so a POST, PUT, PATCH or DELETE handler is guarded from the moment it exists; reads
(GET, HEAD, OPTIONS) stay open. A write that changes nothing and spends nothing (a query that
needs a JSON body) opts out where it is declared, with its reason::

    @post("/discover", opt=open_write("a query with a JSON body; reads the catalog"))

``tests/test_route_guards.py`` walks every service's routes and holds the opt-outs to a short,
named allow-list.

The app-wide check is a middleware, not a guard: Litestar copies the route handler for every
guard of every request (``BaseRouteHandler.authorize_connection``), which was a fifteenth of
the registry's CPU a heartbeat, on reads as much as on writes.
"""

from __future__ import annotations

import hmac
from typing import Any

from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from libs.common.kit.problems import answer_refused
from libs.common.kit.request_context import scope_header

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


def _check_token(authorization: str, expected: str | None) -> None:
    """Refuse unless ``authorization`` is ``Bearer <expected>``; open when none is expected."""
    if not expected:
        return
    scheme, _sep, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        raise NotAuthorizedException(
            detail="this endpoint needs 'Authorization: Bearer <token>' with the configured token",
            headers={"WWW-Authenticate": 'Bearer realm="pas"'},
        )


class WriteTokenMiddleware(ASGIMiddleware):
    """Every write needs ``token``, unless its handler was declared with :func:`open_write`
    (``exclude_opt_key``: Litestar then leaves this middleware out of that route)."""

    scopes = (ScopeType.HTTP,)
    exclude_opt_key = OPEN_WRITE_OPT

    def __init__(self, token: str) -> None:
        self.token = token

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope.get("method") in WRITE_METHODS:
            try:
                _check_token(scope_header(scope, b"authorization"), self.token)
            except NotAuthorizedException as refused:
                await answer_refused(scope, receive, send, refused)
                return
        await next_app(scope, receive, send)
