"""Desk keys: a bearer token per desk or team (``ROUTER_KEYS_FILE``), each with what it may
ask and of which providers, a daily budget, a pace and perhaps an expiry of its own, its spend
told apart in ``GET /costs``.

The file holds each token's SHA-256, never the token (``pas key new <name>`` makes both), so
it is no secret. A request carrying a key's token is that key's; one carrying the router's own
token (``ROUTER_TOKEN``) is the operator's, unlimited. With a keys file, every routed request
needs one or the other; without one, the router's token guards as on every PAS service.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from libs.common.errors import PASError, SettingsError
from libs.common.kit.problems import answer_refused
from libs.common.kit.request_context import scope_header
from libs.common.schemas.usage import AwareTime
from services.provider_router.rate_limits import RateWindow

KEY_STATE = "pas_desk_key"
"""Where the request's key (a :class:`DeskKey`, or None for the router's token) is kept in
the request's scope state."""
GATE_STATE = "pas_desk_keys"
"""The app state key of the :class:`KeyGate`."""
TOKEN_PREFIX = "pas-"  # noqa: S105  (a prefix, not a secret)

Name = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Digest = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}$")]


class DeskKey(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: Name
    sha256: Digest
    """The token's SHA-256, in hex."""
    daily_budget_usd: Annotated[float, msgspec.Meta(ge=0)] | None = None
    """What the key may spend a UTC day, on every router on the database; then 429s."""
    rpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Requests a minute the key may send (every router on the database together)."""
    tpm: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Tokens a minute its answers may take."""
    capabilities: frozenset[str] | None = None
    """What it may ask (by capability, or by the model of a candidate offering one); None:
    anything."""
    providers: frozenset[str] | None = None
    """The providers it may be routed to: names from the providers file, ``local`` for PAS's
    own LLM services; None: any. A desk reading material non-public information keeps to
    ``["local"]``, so that its documents never leave the firm's machines."""
    expires: AwareTime | None = None
    """From this moment on its token is refused (401): a contractor's key, one lent for a
    project, one being rotated out. None: it does not expire."""

    @property
    def pace_id(self) -> str:
        """Its rate window's name among the candidates' (shared as theirs are)."""
        return _pace_id(self.name)

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires.timestamp()


def _pace_id(name: str) -> str:
    return f"key:{name}"


class KeyState(msgspec.Struct, kw_only=True):
    """One row of ``GET /keys``: a desk key's limits and where it stands against them."""

    name: str
    capabilities: list[str] | None
    providers: list[str] | None
    daily_budget_usd: float | None
    spent_today_usd: float
    rpm: int | None
    tpm: int | None
    requests_last_minute: int
    tokens_last_minute: int
    expires: datetime | None
    refused_now: str | None
    """Why a request from it would be refused now (expiry, budget or pace), or None."""


class _KeysFile(msgspec.Struct, forbid_unknown_fields=True):
    keys: list[DeskKey]


class KeyRefused(PASError):
    """The key may not send this request: not its capability (403), or its budget or pace is
    spent (429)."""

    def __init__(self, status_code: int, detail: str, retry_after_s: float | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        if retry_after_s is not None:
            self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh key token: 256 random bits, recognisable by its prefix in a leaked log."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def load_keys(path: str | None) -> list[DeskKey]:
    """The keys of ``ROUTER_KEYS_FILE`` (none without one); a bad file is a SettingsError."""
    if not path:
        return []
    try:
        keys = msgspec.convert(tomllib.loads(Path(path).read_text()), _KeysFile).keys
    except (OSError, tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise SettingsError("ROUTER_KEYS_FILE", f"{path}: {exc}") from exc
    for field in ("name", "sha256"):
        seen: set[str] = set()
        for key in keys:
            value = getattr(key, field)
            if value in seen:
                raise SettingsError("ROUTER_KEYS_FILE", f"{path}: two keys have {field} {value}")
            seen.add(value)
    return keys


def unknown_providers(keys: list[DeskKey], known: set[str]) -> dict[str, list[str]]:
    """Per key, the providers it names that are not in ``known`` (a misspelt one would make
    every request of the key a 403)."""
    found = {}
    for key in keys:
        unknown = sorted((key.providers or frozenset()) - known)
        if unknown:
            found[key.name] = unknown
    return found


def _seconds_to_utc_midnight(now: float) -> float:
    moment = datetime.fromtimestamp(now, UTC)
    midnight = datetime.combine(moment.date() + timedelta(days=1), datetime.min.time(), UTC)
    return (midnight - moment).total_seconds()


class KeyGate:
    """Who a request is, and whether its key may send it now."""

    def __init__(
        self,
        keys: list[DeskKey],
        *,
        router_token: str | None,
        spent_today: Callable[[str], float],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._by_digest: dict[str, DeskKey] = {}
        self._router_token = router_token
        self._spent_today = spent_today
        self._clock = clock
        self.windows: dict[str, RateWindow] = {}
        """Each key's pace, by its ``pace_id``; changed in place (a sharer holds the dict)."""
        self.replace(keys)

    def replace(self, keys: list[DeskKey]) -> None:
        """Take these keys instead (the keys file changed): a key kept by name keeps its
        minute's count with its new limits; a key removed is refused from now on."""
        self._by_digest = {key.sha256: key for key in keys}
        wanted = {key.pace_id: key for key in keys}
        for gone in set(self.windows) - set(wanted):
            del self.windows[gone]
        for pace_id, key in wanted.items():
            window = self.windows.setdefault(pace_id, RateWindow())
            window.rpm, window.tpm = key.rpm, key.tpm

    @property
    def keys(self) -> list[DeskKey]:
        return list(self._by_digest.values())

    @property
    def has_router_token(self) -> bool:
        return bool(self._router_token)

    def spent_today(self, key: DeskKey) -> float:
        return self._spent_today(key.name)

    def snapshot(self) -> list[KeyState]:
        rows = []
        for key in sorted(self.keys, key=lambda k: k.name):
            window = self.windows[key.pace_id]
            requests, tokens = window.counts()
            spent = self.spent_today(key)
            over = key.daily_budget_usd is not None and spent >= key.daily_budget_usd
            if key.expired(self._clock()):
                why: str | None = "expired"
            else:
                why = "daily budget spent" if over else window.why_not()
            rows.append(
                KeyState(
                    name=key.name,
                    capabilities=None if key.capabilities is None else sorted(key.capabilities),
                    providers=None if key.providers is None else sorted(key.providers),
                    daily_budget_usd=key.daily_budget_usd,
                    spent_today_usd=round(spent, 6),
                    rpm=key.rpm,
                    tpm=key.tpm,
                    requests_last_minute=requests,
                    tokens_last_minute=tokens,
                    expires=key.expires,
                    refused_now=why,
                )
            )
        return rows

    def identify(self, authorization: str) -> DeskKey | None:
        """The key whose token the ``Authorization`` header carries, None for the router's
        token (or for anyone when neither keys nor a token are configured); else 401, as for
        a key past its expiry."""
        if not self._by_digest and not self._router_token:
            return None
        scheme, _sep, presented = authorization.partition(" ")
        token = presented.strip()
        if scheme.lower() == "bearer" and token:
            if self._router_token and hmac.compare_digest(
                token.encode(), self._router_token.encode()
            ):
                return None
            key = self._by_digest.get(token_digest(token))
            if key is not None:
                if key.expires is not None and key.expired(self._clock()):
                    raise NotAuthorizedException(
                        detail=f"key {key.name!r} expired at {key.expires.isoformat()}: the "
                        "desk needs a new one (pas key new), or the keys file a later expires",
                        headers={
                            "WWW-Authenticate": 'Bearer realm="pas", error="invalid_token", '
                            'error_description="the key expired"'
                        },
                    )
                return key
        if not self._by_digest:
            whose = "the configured token"
        elif self._router_token:
            whose = "a desk key's token (ROUTER_KEYS_FILE) or the router's"
        else:
            whose = "a desk key's token (ROUTER_KEYS_FILE)"
        raise NotAuthorizedException(
            detail=f"this endpoint needs 'Authorization: Bearer <token>' with {whose}",
            headers={"WWW-Authenticate": 'Bearer realm="pas"'},
        )

    def may_ask(
        self,
        key: DeskKey | None,
        capabilities: frozenset[str],
        providers: frozenset[str] = frozenset(),
    ) -> None:
        """Refuse (403) what the key may not ask: ``capabilities`` are those the request asks
        (its capability, or those of the model it names), ``providers`` those of the
        candidates offering it (none of either: nothing offers it, which the router answers
        with a 404 as for anyone)."""
        if key is None:
            return
        if key.capabilities is not None and capabilities and not capabilities & key.capabilities:
            raise KeyRefused(
                403,
                f"key {key.name!r} may ask {', '.join(sorted(key.capabilities))}, "
                f"not {', '.join(sorted(capabilities))}",
            )
        if key.providers is not None and providers and not providers & key.providers:
            raise KeyRefused(
                403,
                f"key {key.name!r} may be routed to {', '.join(sorted(key.providers))}; what "
                f"it asks is offered by {', '.join(sorted(providers))} only",
            )

    def admit(
        self,
        key: DeskKey | None,
        capabilities: frozenset[str],
        providers: frozenset[str] = frozenset(),
    ) -> None:
        """Count the request against its key, or refuse it: not its to ask (403), or its
        budget or pace spent (429)."""
        if key is None:
            return
        self.may_ask(key, capabilities, providers)
        if key.daily_budget_usd is not None:
            spent = self.spent_today(key)
            if spent >= key.daily_budget_usd:
                raise KeyRefused(
                    429,
                    f"key {key.name!r} spent its daily budget ({spent:.4f} of "
                    f"{key.daily_budget_usd} USD); it renews at 00:00 UTC",
                    _seconds_to_utc_midnight(self._clock()),
                )
        window = self.windows[key.pace_id]
        why = window.why_not()
        if why is not None:
            raise KeyRefused(429, f"key {key.name!r} is {why}", window.seconds_to_room())
        window.started()

    def used(self, name: str, tokens: int) -> None:
        """A request the key ``name`` sent took ``tokens``."""
        window = self.windows.get(_pace_id(name))
        if window is not None:
            window.used(tokens)


def caller_key(connection: ASGIConnection[Any, Any, Any, Any]) -> DeskKey | None:
    """The request's key, as :class:`CallerMiddleware` found it."""
    key: DeskKey | None = connection.scope.get("state", {}).get(KEY_STATE)
    return key


class CallerMiddleware(ASGIMiddleware):
    """The routed endpoints' check: a desk key's token or the router's (see the module); the
    key found is kept in the request's state (:func:`caller_key`). A middleware rather than
    a guard: Litestar copies the route handler for every guard of every request."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        gate: KeyGate = scope["litestar_app"].state[GATE_STATE]
        try:
            key = gate.identify(scope_header(scope, b"authorization"))
        except NotAuthorizedException as refused:
            await answer_refused(scope, receive, send, refused)
            return
        scope.setdefault("state", {})[KEY_STATE] = key
        await next_app(scope, receive, send)


async def require_operator(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Reads of every desk's spend: the router's token (or anyone, when neither keys nor a
    token are configured); a desk key's token is a 403, as one desk may not read another's."""
    gate: KeyGate = connection.app.state[GATE_STATE]
    key = gate.identify(connection.headers.get("authorization", ""))
    if key is not None:
        # With desk keys and no router token nobody may read this: say what is missing.
        unset = "" if gate.has_router_token else ", which is not set (ROUTER_TOKEN)"
        raise KeyRefused(
            403,
            f"key {key.name!r} is a desk's; this is for the router's token{unset} "
            "(a desk's own standing is in GET /keys)",
        )
