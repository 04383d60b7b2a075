"""Request ids and one access-log line per request, as a plain ASGI middleware."""

from __future__ import annotations

import random
import re
import time

import structlog
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from libs.common.constants import HEADER_REQUEST_ID

_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

QUIET_WHEN_OK = "quiet_when_ok"
"""A route handler's ``opt`` key (``opt={QUIET_WHEN_OK: True}``): its requests get an access
line only when they fail. For requests that come on a timer (health checks, scrapes, a
registry's heartbeats: thousands of agents every few seconds), whose lines would bury the
others."""

access_log = structlog.get_logger("pas.access")


def scope_header(scope: Scope, name: bytes) -> str:
    """The request's header ``name`` (lower case), or "": read off the ASGI scope, with no
    connection object built for it (the kit's middleware read one header a request)."""
    return next((v.decode("latin-1") for k, v in scope["headers"] if k == name), "")


def current_request_id() -> str | None:
    """The id of the request being served by this task, if any."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


class RequestContextMiddleware(ASGIMiddleware):
    """Give every request an id (the caller's ``X-Request-ID`` when sane) bound to its logs."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        incoming = scope_header(scope, b"x-request-id")
        # 32 hex digits, as ``uuid4().hex`` gave, without its system call a request (a
        # request id names a request; it guards nothing, so it need not be unguessable).
        request_id = incoming
        if not _ACCEPTABLE_REQUEST_ID.match(incoming):
            request_id = f"{random.getrandbits(128):032x}"
        status_code = 500
        started = time.perf_counter()

        async def send_with_request_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                MutableScopeHeaders.from_message(message)[HEADER_REQUEST_ID] = request_id
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await next_app(scope, receive, send_with_request_id)
            finally:
                handler = scope.get("route_handler")
                quiet = handler is not None and handler.opt.get(QUIET_WHEN_OK, False)
                if not quiet or status_code >= 400:
                    client = scope.get("client")  # (host, port), or None off a socket
                    access_log.info(
                        "request",
                        method=scope.get("method"),
                        path=scope["path"],
                        status=status_code,
                        client=None if client is None else client[0],
                        duration_ms=round((time.perf_counter() - started) * 1000, 3),
                    )
