"""What a routed request asks of the router: its desk key checked against what it may ask
(``desk_keys.py``), the body to pass on, and the :class:`RouteAsk` the dispatcher plans by."""

from __future__ import annotations

from typing import Any

from litestar import Request

from libs.common.kit.request_context import current_request_id
from libs.common.schemas.usage import HEADER_WORKFLOW_ID, HEADER_WORKFLOW_RUN_ID
from services.provider_router.candidates import Candidate
from services.provider_router.desk_keys import GATE_STATE, DeskKey, KeyGate, caller_key
from services.provider_router.dispatcher import RouteAsk
from services.provider_router.pool import CandidatePool
from services.provider_router.wire import (
    RouterChatRequest,
    RouterEmbeddingRequest,
    RouteRequest,
)

_ROUTER_FIELDS = ("capability", "strategy", "prefer_local")
"""A body's fields for the router alone, not passed on."""


def _asked(
    offering: list[Candidate], capability: str | None
) -> tuple[frozenset[str], frozenset[str]]:
    """What a request asks, as a key names it: its capability (or those of the candidates
    ``offering`` the model it names), and the providers of the candidates offering it."""
    capabilities = (
        frozenset({capability})
        if capability is not None
        else frozenset(name for c in offering for name in c.capabilities)
    )
    return capabilities, frozenset(c.provider for c in offering)


def checked_key(
    request: Request[Any, Any, Any],
    pool: CandidatePool,
    capability: str | None,
    model: str | None,
    *,
    counted: bool,
) -> tuple[DeskKey | None, list[Candidate] | None]:
    """The request's desk key, refused what it may not ask (and, ``counted``, counted against
    its budget and pace, or refused), with the candidates offering what it asks, looked up
    once for the key and the plan; (None, None) for the router's own token."""
    key = caller_key(request)
    if key is None:
        return None, None
    offering = pool.offering(capability, model)
    gate: KeyGate = request.app.state[GATE_STATE]
    check = gate.admit if counted else gate.may_ask
    check(key, *_asked(offering, capability))
    return key, offering


async def forwarded(
    request: Request[Any, Any, Any],
    data: RouterChatRequest | RouterEmbeddingRequest,
    pool: CandidatePool,
) -> tuple[dict[str, Any], RouteAsk]:
    """The body to pass on, the router's own fields taken out, and what it asks: a
    capability, else the model it names."""
    model = None if data.capability else data.model
    key, offering = checked_key(request, pool, data.capability, model, counted=True)
    # The body as Litestar decoded it (once, kept on the request) and made ``data`` of: passed
    # on whole, with the fields the router's types leave out (an upstream may know them).
    decoded: dict[str, Any] = await request.json()
    body = {name: value for name, value in decoded.items() if name not in _ROUTER_FIELDS}
    images = isinstance(data, RouterChatRequest) and _holds_images(data)
    return body, route_ask(request, key, data, model=model, images=images, offering=offering)


def route_ask(
    request: Request[Any, Any, Any],
    key: DeskKey | None,
    data: RouteRequest | RouterChatRequest | RouterEmbeddingRequest,
    *,
    model: str | None,
    images: bool,
    offering: list[Candidate] | None,
) -> RouteAsk:
    """What a request asks of the router, with the desk key that sent it (None: the
    router's own token), the workflow run it belongs to and the candidates offering it if
    looked up already."""
    return RouteAsk(
        capability=data.capability,
        model=model,
        strategy=data.strategy,
        prefer_local=data.prefer_local,
        images=images,
        request_id=current_request_id(),
        workflow_id=request.headers.get(HEADER_WORKFLOW_ID),
        run_id=request.headers.get(HEADER_WORKFLOW_RUN_ID),
        key=key.name if key else None,
        providers=key.providers if key else None,
        offering=offering,
    )


def _holds_images(data: RouterChatRequest) -> bool:
    """Whether a message holds images. Where they may be is the candidate's to say (OpenAI
    and Anthropic take them in a user's message only, and refuse others with a 400 that
    comes back as it is)."""
    return any(message.has_images() for message in data.messages)
