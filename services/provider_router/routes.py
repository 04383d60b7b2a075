"""HTTP surface of the router: /route, OpenAI-compatible chat, /providers, /costs (the bodies
are ``wire.py``'s; what a request asks, its desk key checked, is ``asks.py``'s)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.openapi.spec import (
    OpenAPIMediaType,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
)
from litestar.params import JSONBody, Parameter
from litestar.response import Stream

from libs.common.durations import parse_duration
from libs.common.errors import InvalidRequest
from libs.common.kit import problem_responses
from libs.common.kit.auth import open_write
from libs.common.kit.openapi import (
    answered_also_as,
    documented_answer,
    schema_from_json_schema,
)
from libs.common.kit.problems import OPENAI_ERRORS
from libs.common.schemas.embeddings import EmbeddingList
from libs.common.schemas.json_schema import inline_schema
from libs.common.schemas.llm import ChatCompletion, ModelCard, ModelList
from services.provider_router.answer_cache import AnswerCache, cache_key
from services.provider_router.asks import checked_key, forwarded, route_ask
from services.provider_router.candidates import Candidate
from services.provider_router.costs import CostReport
from services.provider_router.desk_keys import (
    GATE_STATE,
    CallerMiddleware,
    KeyGate,
    caller_key,
    require_operator,
)
from services.provider_router.dispatcher import Dispatcher, RouteAsk, Served
from services.provider_router.dispatcher import Operation as CallKind
from services.provider_router.metrics import RouterMetrics
from services.provider_router.pool import CandidatePool
from services.provider_router.settings import RouterSettings
from services.provider_router.wire import (
    KeyList,
    ProviderList,
    RouteBody,
    RouteDecision,
    RoutedTo,
    RouterChatRequest,
    RouterEmbeddingRequest,
    RouteRequest,
)

# The kit's token check knows the router's token only; CallerMiddleware takes it or a key's.
_KEYED = open_write("a desk key's token or the router's, checked by desk_keys.CallerMiddleware")
_OPENAI_KEYED = {**_KEYED, **OPENAI_ERRORS}


@dataclass(frozen=True, slots=True)
class Routing:
    """What a routed call uses, given to its handler as one dependency: Litestar resolves two
    or more of a handler's dependencies in an anyio task group (litestar issue 4563), which
    took about a seventh of the router's CPU a call."""

    dispatcher: Dispatcher
    pool: CandidatePool
    answers: AnswerCache
    metrics: RouterMetrics


ROUTING_STATE = "routing"
"""Where the app's state holds its ``Routing`` (made with the dispatcher, by the lifespan)."""


def provide_routing(state: State) -> Routing:
    routing: Routing = state[ROUTING_STATE]
    return routing


def _routed(candidate: Candidate) -> RoutedTo:
    return RoutedTo(
        provider=candidate.provider,
        model=candidate.model,
        endpoint=candidate.endpoint,
        agent_id=candidate.agent_id,
        candidate_id=candidate.id,
    )


_FALLBACK_REASONS_LIMIT = 2000
"""The most characters ``X-PAS-Fallback-Reasons`` carries; the whole reasons are in the
``route decision`` log line."""
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x20\x7f]+")


def _header_safe(text: str, limit: int) -> str:
    """``text`` fit for a response header: printable ASCII (other characters escaped as
    ``\\uXXXX``), each run of whitespace or control characters one space, at most ``limit``
    characters. The reasons hold upstreams' bodies as sent (an HTML error page's CRLFs, text
    in any script): raw, a CR or LF makes the server drop the connection and a character
    beyond Latin-1 makes the answer a 500, though a candidate answered."""
    escaped = text.encode("ascii", "backslashreplace").decode("ascii")
    safe = _UNSAFE_IN_HEADER.sub(" ", escaped).strip()
    return safe if len(safe) <= limit else safe[: limit - 3] + "..."


def _route_headers(served: Served) -> dict[str, str]:
    return {
        "X-PAS-Provider": served.candidate.provider,
        "X-PAS-Model": served.candidate.model,
        "X-PAS-Candidate": served.candidate.id,
        "X-PAS-Fallbacks": str(len(served.fallbacks)),
        "X-PAS-Fallback-Reasons": _header_safe(
            " | ".join(served.fallbacks), _FALLBACK_REASONS_LIMIT
        ),
    }


async def _answered(
    request: Request[Any, Any, Any],
    ask: RouteAsk,
    body: dict[str, Any],
    operation: CallKind,
    routing: Routing,
) -> Response[Any]:
    """A routed call's answer, from the answer cache where it may come from there."""
    answers = routing.answers

    async def call() -> tuple[bytes, dict[str, str]]:
        payload, served = await routing.dispatcher.complete(ask, body, operation)
        return payload, _route_headers(served)

    # The desk key too: one desk is never answered, nor can tell by a hit, what another asked;
    # and its providers, so that an answer kept from one it no longer may use is not given.
    providers = None if ask.providers is None else sorted(ask.providers)
    route = (ask.capability, ask.model, ask.strategy, ask.prefer_local, ask.key, providers)
    key = cache_key(operation, body, route) if answers.enabled else None
    asked = request.headers.get("cache-control", "").lower()
    if key is None or "no-store" in asked:
        payload, headers = await call()
        return Response(payload, media_type="application/json", headers=headers)
    (payload, headers), outcome = await answers.answer(key, call, lookup="no-cache" not in asked)
    routing.metrics.cache.labels(operation, outcome).inc()
    return Response(
        payload, media_type="application/json", headers={**headers, "X-PAS-Cache": outcome}
    )


def _exact_body(body: Any, *, streams: bool = False) -> type[Operation]:
    """An operation documenting its request body by msgspec's own JSON Schema of ``body`` (a
    Struct, or one annotated with ``extra_json_schema`` for what msgspec's cannot say).

    Litestar drops constraints inside unions (``top_p`` > 0) and does not say that unknown
    fields are refused, so its schema of these Structs would accept what the router refuses;
    the kit's ``WireTypeSchemaPlugin`` does the same for types in ``libs.common.schemas``
    only. ``streams``: the 200 may also be a ``text/event-stream`` (``stream: true``).
    """
    schema = schema_from_json_schema(inline_schema(body))
    streamed = {"text/event-stream": Schema(type=OpenAPIType.STRING)} if streams else {}

    @dataclass
    class ExactBodyOperation(answered_also_as(streamed)):  # type: ignore[misc]  # made at run time
        def __post_init__(self) -> None:
            super().__post_init__()
            self.request_body = RequestBody(
                content={"application/json": OpenAPIMediaType(schema=schema)}, required=True
            )

    return ExactBodyOperation


class RouterController(Controller):
    tags = ("router",)

    @post(
        "/route",
        status_code=200,
        operation_class=_exact_body(RouteBody),
        responses=problem_responses(400, 401, 403, 404, 503),
        middleware=[CallerMiddleware()],
        opt=_KEYED,
    )
    async def route(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[RouteRequest],
        routing: NamedDependency[Routing],
    ) -> RouteDecision:
        """Where a task would go now, why, and where it would go next."""
        key, offering = checked_key(
            request, routing.pool, data.capability, data.model, counted=False
        )
        plan = routing.dispatcher.plan(
            route_ask(request, key, data, model=data.model, images=data.images, offering=offering)
        )
        chosen, *rest = plan.ordered
        return RouteDecision(
            **msgspec.structs.asdict(_routed(chosen)),
            reason=plan.reason,
            fallbacks=[_routed(c) for c in rest],
            considered=plan.considered,
        )

    @post(
        ["/v1/chat/completions", "/chat/completions"],
        status_code=200,
        operation_class=_exact_body(RouterChatRequest, streams=True),
        summary="OpenAI-compatible chat, routed by `capability` or by model name, with fallback",
        responses={
            200: documented_answer(ChatCompletion, "The answer, or an SSE stream"),
            **problem_responses(400, 401, 403, 404, 413, 429, 502, 503),
        },
        middleware=[CallerMiddleware()],
        opt=_OPENAI_KEYED,
    )
    async def chat_completions(
        self,
        *,
        request: Request[Any, Any, Any],
        data: JSONBody[RouterChatRequest],
        routing: NamedDependency[Routing],
    ) -> Response[Any]:
        body, ask = await forwarded(request, data, routing.pool)
        if data.stream:
            chunks, served = await routing.dispatcher.stream(ask, body)
            return Stream(
                chunks,
                media_type="text/event-stream",
                headers=_route_headers(served),
                # Settles the call and frees the upstream at once if the client left.
                background=BackgroundTask(chunks.aclose),
            )
        return await _answered(request, ask, body, "chat", routing)

    @post(
        ["/v1/embeddings", "/embeddings"],
        status_code=200,
        operation_class=_exact_body(RouterEmbeddingRequest),
        summary="OpenAI-compatible embeddings, routed by `capability` or by model, with fallback",
        responses={
            200: documented_answer(EmbeddingList, "The vectors, in the texts' order"),
            **problem_responses(400, 401, 403, 404, 413, 429, 502, 503),
        },
        middleware=[CallerMiddleware()],
        opt=_OPENAI_KEYED,
    )
    async def embeddings(
        self,
        *,
        request: Request[Any, Any, Any],
        data: JSONBody[RouterEmbeddingRequest],
        routing: NamedDependency[Routing],
    ) -> Response[Any]:
        body, ask = await forwarded(request, data, routing.pool)
        return await _answered(request, ask, body, "embeddings", routing)

    @get(
        ["/v1/models", "/models"],
        summary="The models the router routes to, OpenAI's list",
        opt=OPENAI_ERRORS,
    )
    async def models(self, pool: NamedDependency[CandidatePool]) -> ModelList:
        """Each model a candidate serves, once (a request naming it as ``model`` is routed to
        the candidates serving it), owned by the first provider serving it; as OpenAI lists
        models, so that clients and tools that ask which models there are find them."""
        owners: dict[str, str] = {}
        for candidate in sorted(pool.all(), key=lambda c: c.id):
            owners.setdefault(candidate.model, candidate.provider)
        return ModelList(data=[ModelCard(id=m, owned_by=owners[m]) for m in sorted(owners)])

    @get("/providers", summary="Every candidate's live state: circuit, latency, load, spend")
    async def providers(self, pool: NamedDependency[CandidatePool]) -> ProviderList:
        return ProviderList(candidates=pool.snapshot())

    @get(
        "/keys",
        responses=problem_responses(401),
        middleware=[CallerMiddleware()],
        summary="Every desk key's limits and where it stands: spend today, last minute",
    )
    async def keys(self, request: Request[Any, Any, Any]) -> KeyList:
        """The router's token sees every key; a desk key's token its own only."""
        gate: KeyGate = request.app.state[GATE_STATE]
        rows = gate.snapshot()
        key = caller_key(request)
        return KeyList(keys=rows if key is None else [r for r in rows if r.name == key.name])

    @get(
        "/costs",
        responses=problem_responses(400, 401, 403),
        guards=[require_operator],
        summary="Spend and tokens over a window (every desk's: the router's token)",
    )
    async def costs(
        self,
        pool: NamedDependency[CandidatePool],
        settings: NamedDependency[RouterSettings],
        window: Annotated[
            str | None,
            Parameter(
                description="Such as 1h or 30m (default: ROUTER_COST_WINDOW_S)",
                pattern=r"^\d+(\.\d+)?(ms|s|m|h)?$",
                max_length=32,
            ),
        ] = None,
    ) -> CostReport:
        try:
            window_s = settings.cost_window_s if window is None else parse_duration(window)
        except ValueError as exc:
            raise InvalidRequest(f"window: {exc}") from exc
        return await pool.ledger.report(window_s)
