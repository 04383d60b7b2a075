"""HTTP surface of the registry: thin handlers over the catalog."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from litestar import Controller, HttpMethod, Response, delete, get, post, route
from litestar.di import NamedDependency
from litestar.exceptions import ValidationException
from litestar.params import JSONBody, Parameter

from libs.common.constants import HEADER_CATALOG_INDEX
from libs.common.durations import parse_duration
from libs.common.kit import QUIET_WHEN_OK, open_write, problem_responses
from libs.common.kit.parameters import constrained
from libs.common.schemas.agents import (
    METADATA_MAX_NESTING,
    AgentDefinition,
    AgentId,
    AgentList,
    DiscoveryRequest,
    DiscoveryResponse,
    RegisteredAgent,
)
from libs.common.schemas.patterns import TEXT_END
from libs.common.telemetry import pas_span
from services.registry.catalog import Catalog
from services.registry.settings import RegistrySettings

T = TypeVar("T")

AgentIdParameter = Annotated[AgentId, constrained(AgentId, "The agent id.")]

_DEFAULT_WAIT_S = 300.0
_DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)?" + TEXT_END


def _seconds(parameter: str, text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValidationException(
            detail=f"{parameter}: {exc}",
            extra=[{"key": parameter, "message": str(exc), "source": "query"}],
        ) from exc


def _metadata_problem(metadata: dict[str, Any]) -> tuple[str, str] | None:
    """``(where, what is wrong)`` for the first place in ``metadata`` that cannot be kept: a
    string or key holding U+0000 (PostgreSQL's JSONB cannot store it), or nesting deeper than
    :data:`METADATA_MAX_NESTING`. A walk without recursion: metadata Litestar reads may nest
    deeper than Python's stack (a RecursionError, a 500, in the recursive walk it replaces)."""
    pending: list[tuple[Any, str, int]] = [(metadata, "metadata", 1)]
    while pending:
        value, path, depth = pending.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path, _NUL_MESSAGE
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > METADATA_MAX_NESTING:
            return "metadata", f"nested deeper than {METADATA_MAX_NESTING} levels"
        children: list[tuple[Any, str, int]] = []
        if isinstance(value, dict):
            for key, item in value.items():
                name = str(key)
                # Written as JSON escapes it, so that the answer names the key readably.
                inner = path + "." + name.replace("\x00", "\\u0000")
                if "\x00" in name:
                    children.append((name, inner, depth))  # found as a string holding U+0000
                children.append((item, inner, depth + 1))
        else:
            children = [(item, f"{path}[{n}]", depth + 1) for n, item in enumerate(value)]
        pending += reversed(children)  # popped first to last: the order the JSON has
    return None


_NUL_MESSAGE = "U+0000 cannot be stored; remove it"


def _refuse_unkeepable_metadata(metadata: dict[str, Any]) -> None:
    # The same answer on both stores: SQLite would keep U+0000, PostgreSQL fail with a 500.
    problem = _metadata_problem(metadata)
    if problem is not None:
        field, message = problem
        raise ValidationException(
            detail=f"{field}: {message}",
            extra=[{"key": field, "message": message, "source": "body"}],
        )


def _indexed(body: T, index: int) -> Response[T]:
    return Response(body, headers={HEADER_CATALOG_INDEX: str(index)})


class RegistryController(Controller):
    tags = ("registry",)

    @post(
        "/register",
        status_code=200,
        responses=problem_responses(400, 401, 413),
        summary="Register or update an agent (upsert by agent_id)",
    )
    async def register(
        self,
        data: JSONBody[AgentDefinition],
        catalog: NamedDependency[Catalog],
        ttl: Annotated[
            str | None,
            Parameter(
                description="Heartbeat TTL such as 30s; 0 disables the TTL check. "
                "Default: REGISTRY_DEFAULT_TTL_S.",
                max_length=32,
                pattern=_DURATION_PATTERN,
            ),
        ] = None,
    ) -> Response[RegisteredAgent]:
        ttl_s = None if ttl is None else _seconds("ttl", ttl)
        _refuse_unkeepable_metadata(data.metadata)
        agent = await catalog.register(data, ttl_s)
        return _indexed(agent, agent.modify_index)

    @post(
        "/discover",
        status_code=200,
        opt=open_write("a query with a JSON body: reads the catalog, changes nothing"),
        responses=problem_responses(400, 413),
        summary="Find agents by capability, role, tier and health",
    )
    async def discover(
        self, data: JSONBody[DiscoveryRequest], catalog: NamedDependency[Catalog]
    ) -> Response[DiscoveryResponse]:
        index = catalog.index
        with pas_span(
            "registry discover",
            attributes={
                "pas.registry.capabilities": ",".join(data.capabilities),
                "pas.registry.match": data.match,
            },
        ) as span:
            agents = catalog.discover(data)
            span.set_attribute("pas.registry.found", len(agents))
        return _indexed(DiscoveryResponse(agents=agents, index=index), index)

    @get(
        "/agents",
        responses=problem_responses(400),
        summary="List every agent; with index=N > 0, block until the catalog changes past N",
    )
    async def list_agents(
        self,
        catalog: NamedDependency[Catalog],
        settings: NamedDependency[RegistrySettings],
        index: Annotated[
            int,
            Parameter(
                ge=0,
                description="Block until the catalog index is greater than this "
                "(0: answer at once).",
            ),
        ] = 0,
        wait: Annotated[
            str | None,
            Parameter(
                description="Longest time to block, such as 30s (default 5m).",
                max_length=32,
                pattern=_DURATION_PATTERN,
            ),
        ] = None,
    ) -> Response[AgentList]:
        if index > 0:
            # Like Consul, a longer wait than the server allows is cut down, not refused.
            wait_s = _DEFAULT_WAIT_S if wait is None else _seconds("wait", wait)
            await catalog.wait_for_change(index, min(wait_s, settings.max_wait_s))
        current = catalog.index
        return _indexed(AgentList(agents=catalog.all(), index=current), current)

    @get(
        "/agents/{agent_id:str}",
        responses=problem_responses(400, 404),
        summary="One agent and its health",
    )
    async def get_agent(
        self, agent_id: AgentIdParameter, catalog: NamedDependency[Catalog]
    ) -> RegisteredAgent:
        with pas_span("registry get", attributes={"pas.registry.agent_id": agent_id}):
            return catalog.get(agent_id)

    @delete(
        "/agents/{agent_id:str}",
        responses=problem_responses(400, 401, 404),
        summary="Deregister an agent",
    )
    async def deregister(
        self, agent_id: AgentIdParameter, catalog: NamedDependency[Catalog]
    ) -> None:
        await catalog.deregister(agent_id)

    @route(
        "/agents/{agent_id:str}",
        http_method=[HttpMethod.OPTIONS],
        include_in_schema=False,
        status_code=204,
    )
    async def agent_options(self) -> Response[None]:
        # Litestar's automatic OPTIONS answer lists only the first handler of a path that has
        # two (GET and DELETE here), so this path states its methods itself.
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS"})

    @post(
        "/agents/{agent_id:str}/heartbeat",
        status_code=200,
        responses=problem_responses(400, 401, 404),
        summary="Restart the agent's TTL",
        opt={QUIET_WHEN_OK: True},
    )
    async def heartbeat(
        self, agent_id: AgentIdParameter, catalog: NamedDependency[Catalog]
    ) -> RegisteredAgent:
        return await catalog.heartbeat(agent_id)
