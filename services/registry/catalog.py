"""The catalog: agents in memory, indexed by capability, with Consul-style liveness and watch.

Every change that a watcher should see bumps the catalog ``index``; ``wait_for_change`` blocks
until the index passes the one a caller last saw. Heartbeats that change nothing touch memory
only, so thousands of agents can heartbeat without a database write each.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

import msgspec
import structlog

from libs.common.errors import AgentNotFound
from libs.common.schemas.agents import (
    AgentDefinition,
    AgentStatus,
    DiscoveryRequest,
    RegisteredAgent,
)
from services.registry.store import AgentStore

logger = structlog.get_logger("pas.registry.catalog")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class Catalog:
    def __init__(
        self,
        store: AgentStore,
        *,
        default_ttl_s: float,
        deregister_critical_after_s: float,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._default_ttl_s = default_ttl_s
        self._grace = timedelta(seconds=deregister_critical_after_s)
        self._clock = clock
        self._agents: dict[str, RegisteredAgent] = {}
        self._by_capability: defaultdict[str, set[str]] = defaultdict(set)
        self._check_failures: dict[str, str] = {}
        # Which registration each agent is on (a serial number, kept in memory): an active
        # check's result applies to the registration it checked, not to one made meanwhile.
        self._registrations: dict[str, int] = {}
        self._registration_serial = 0
        self._index = 1
        self._write_lock = asyncio.Lock()
        self._changed = asyncio.Event()
        self._released = False

    @property
    def index(self) -> int:
        return self._index

    async def load(self) -> None:
        """Restore the catalog; TTL timers of passing agents restart now, as Consul does."""
        agents, stored_index = await self._store.load()
        # Index 0 means "answer at once" to watchers, so even an empty catalog starts at 1.
        self._index = max(stored_index, 1)
        now = self._clock()
        for stored in agents:
            self._put(
                msgspec.structs.replace(stored, last_heartbeat_at=now)
                if stored.status == "passing"
                else stored
            )
        logger.info("catalog loaded", agents=len(agents), index=self._index)

    # -- reads -------------------------------------------------------------------------------

    def get(self, agent_id: str) -> RegisteredAgent:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise AgentNotFound(agent_id) from None

    def all(self) -> list[RegisteredAgent]:
        return sorted(self._agents.values(), key=_by_id)

    def count_by_status(self) -> dict[AgentStatus, int]:
        counts: dict[AgentStatus, int] = {"passing": 0, "critical": 0}
        for agent in self._agents.values():
            counts[agent.status] += 1
        return counts

    def discover(self, request: DiscoveryRequest) -> list[RegisteredAgent]:
        """Agents with all (or any) of the capabilities, then filtered by role, tier, health.

        An empty capability list matches every agent.
        """
        found: Iterable[RegisteredAgent]
        if request.capabilities:
            posting = [self._by_capability.get(c, set()) for c in set(request.capabilities)]
            if request.match == "all":
                smallest, *rest = sorted(posting, key=len)
                ids: Iterable[str] = (i for i in smallest if all(i in other for other in rest))
            else:
                ids = set().union(*posting)
            found = (self._agents[i] for i in ids)
        else:
            found = self._agents.values()
        return sorted(
            (
                agent
                for agent in found
                if (request.role is None or agent.role == request.role)
                and (request.tier is None or agent.tier == request.tier)
                and (not request.healthy_only or agent.status == "passing")
            ),
            key=_by_id,
        )

    def release_watchers(self) -> None:
        """The service is stopping: blocking watches answer now, with the current state (a
        client then watches again, elsewhere or after the restart)."""
        self._released = True
        self._changed.set()

    async def wait_for_change(self, after_index: int, timeout_s: float) -> None:
        """Return once the index passes ``after_index``, or after ``timeout_s``, or when the
        service stops."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._index <= after_index and not self._released:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    # -- writes ------------------------------------------------------------------------------

    async def register(
        self, definition: AgentDefinition, ttl_s: float | None = None
    ) -> RegisteredAgent:
        """Insert or replace an agent (upsert by ``agent_id``); it starts ``passing``."""
        now = self._clock()
        async with self._write_lock:
            previous = self._agents.get(definition.agent_id)
            agent = RegisteredAgent(
                **msgspec.structs.asdict(definition),
                status="passing",
                ttl_s=self._default_ttl_s if ttl_s is None else ttl_s,
                registered_at=previous.registered_at if previous else now,
                last_heartbeat_at=now,
                modify_index=self._index + 1,
            )
            self._check_failures.pop(agent.agent_id, None)
            await self._commit(agent)
            self._registration_serial += 1
            self._registrations[agent.agent_id] = self._registration_serial
        logger.info(
            "agent registered" if previous is None else "agent updated",
            agent_id=agent.agent_id,
            endpoint=agent.endpoint,
            index=agent.modify_index,
        )
        return agent

    async def heartbeat(self, agent_id: str) -> RegisteredAgent:
        """Restart the agent's TTL; a critical agent whose TTL was the problem passes again."""
        agent = self.get(agent_id)
        agent = msgspec.structs.replace(agent, last_heartbeat_at=self._clock())
        self._agents[agent_id] = agent
        if agent.status == "critical":
            return await self._apply_status(agent_id)
        return agent

    async def deregister(self, agent_id: str) -> None:
        async with self._write_lock:
            self.get(agent_id)
            index = self._index + 1
            await self._store.delete(agent_id, index)
            self._drop(agent_id)
            self._advance(index)
        logger.info("agent deregistered", agent_id=agent_id, index=index)

    def registration(self, agent_id: str) -> int | None:
        """The registration the agent is on, for :meth:`record_check`."""
        return self._registrations.get(agent_id, 0) if agent_id in self._agents else None

    async def record_check(
        self, agent_id: str, registration: int | None, failure: str | None
    ) -> None:
        """Result of an active health check of the agent's ``registration``: ``None`` when
        it passed, else the reason. Dropped if the agent registered again (or left) while it
        was checked: a restarted agent's first check of its old self must not turn it
        critical."""
        if registration is None or registration != self.registration(agent_id):
            return
        if failure is None:
            self._check_failures.pop(agent_id, None)
        else:
            self._check_failures[agent_id] = failure
        await self._apply_status(agent_id)

    async def reap(self) -> None:
        """Turn agents whose TTL ran out critical; remove those critical for too long."""
        now = self._clock()
        for agent_id in list(self._agents):
            agent = self._agents.get(agent_id)
            if agent is None:
                continue
            if (
                agent.status == "critical"
                and agent.critical_since is not None
                and now - agent.critical_since > self._grace
            ):
                await self._remove_expired(agent_id)
            elif self._evaluate(agent, now)[0] != agent.status:
                await self._apply_status(agent_id)

    # -- internals ---------------------------------------------------------------------------

    def _evaluate(self, agent: RegisteredAgent, now: datetime) -> tuple[AgentStatus, str | None]:
        if agent.ttl_s > 0:
            silent_for = (now - agent.last_heartbeat_at).total_seconds()
            if silent_for > agent.ttl_s:
                return "critical", (
                    f"TTL expired: no heartbeat for {silent_for:.1f}s (ttl {agent.ttl_s:g}s)"
                )
        failure = self._check_failures.get(agent.agent_id)
        if failure is not None:
            return "critical", failure
        return "passing", None

    async def _apply_status(self, agent_id: str) -> RegisteredAgent:
        async with self._write_lock:
            agent = self.get(agent_id)
            # Heartbeats write memory without the lock, to stay cheap: one that lands while a
            # change is saved is merged into it afterwards and the status judged again, so a
            # record built before the heartbeat never hides it (a live agent left critical).
            while (changed := self._status_change(agent)) is not None:
                await self._store.save(changed, changed.modify_index)
                newest = max(self.get(agent_id).last_heartbeat_at, changed.last_heartbeat_at)
                if changed.status != agent.status:
                    logger.warning(
                        "agent status changed",
                        agent_id=agent_id,
                        status=changed.status,
                        reason=changed.status_reason,
                        index=changed.modify_index,
                    )
                agent = msgspec.structs.replace(changed, last_heartbeat_at=newest)
                self._put(agent)
                self._advance(agent.modify_index)
        return agent

    def _status_change(self, agent: RegisteredAgent) -> RegisteredAgent | None:
        """The agent with its status judged now, or ``None`` when status and reason stand."""
        now = self._clock()
        status, reason = self._evaluate(agent, now)
        if status == agent.status and reason == agent.status_reason:
            return None
        return msgspec.structs.replace(
            agent,
            status=status,
            status_reason=reason,
            critical_since=(agent.critical_since or now) if status == "critical" else None,
            modify_index=self._index + 1,
        )

    async def _remove_expired(self, agent_id: str) -> None:
        async with self._write_lock:
            agent = self._agents.get(agent_id)
            if agent is None or agent.status != "critical":
                return
            index = self._index + 1
            await self._store.delete(agent_id, index)
            self._drop(agent_id)
            self._advance(index)
        logger.warning(
            "agent removed after staying critical",
            agent_id=agent_id,
            critical_since=agent.critical_since,
            index=index,
        )

    async def _commit(self, agent: RegisteredAgent) -> None:
        """Persist first, so that memory never shows what a restart would forget."""
        await self._store.save(agent, agent.modify_index)
        self._put(agent)
        self._advance(agent.modify_index)

    def _put(self, agent: RegisteredAgent) -> None:
        previous = self._agents.get(agent.agent_id)
        if previous is not None:
            for capability in set(previous.capabilities) - set(agent.capabilities):
                self._unindex(capability, agent.agent_id)
        self._agents[agent.agent_id] = agent
        for capability in agent.capabilities:
            self._by_capability[capability].add(agent.agent_id)

    def _drop(self, agent_id: str) -> None:
        agent = self._agents.pop(agent_id)
        self._check_failures.pop(agent_id, None)
        self._registrations.pop(agent_id, None)
        for capability in agent.capabilities:
            self._unindex(capability, agent_id)

    def _unindex(self, capability: str, agent_id: str) -> None:
        holders = self._by_capability.get(capability)
        if holders is not None:
            holders.discard(agent_id)
            if not holders:
                del self._by_capability[capability]

    def _advance(self, index: int) -> None:
        self._index = index
        # Wake every watcher, then give later ones a fresh event to wait on.
        self._changed.set()
        self._changed = asyncio.Event()


def _by_id(agent: RegisteredAgent) -> str:
    return agent.agent_id
