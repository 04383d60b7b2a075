"""Talk to the agent registry: register, heartbeat, deregister, discover and watch.

``RegistryClient`` is one call per request. ``AgentRegistration`` keeps one agent registered for
as long as its service runs: it registers in the background (retrying with backoff while the
registry is down, never blocking the service), heartbeats at a third of the TTL, registers again
if the registry forgot the agent, and deregisters on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx
import msgspec
import stamina
import structlog

from libs.common.clients.http import ServiceClient
from libs.common.errors import AgentNotFound, RegistryError, RegistryUnavailable
from libs.common.schemas.agents import (
    AgentDefinition,
    AgentList,
    DiscoveryRequest,
    DiscoveryResponse,
    MatchMode,
    RegisteredAgent,
)

logger = structlog.get_logger("pas.registry_client")


class RegistryClient(ServiceClient):
    def _unavailable(self, reason: str) -> Exception:
        return RegistryUnavailable(reason)

    def _refused(self, status_code: int, detail: str) -> Exception:
        return RegistryError(status_code, detail)

    async def register(
        self, definition: AgentDefinition, *, ttl_s: float | None = None
    ) -> RegisteredAgent:
        params = {} if ttl_s is None else {"ttl": f"{ttl_s:g}s"}
        response = await self._send(
            "POST", "/register", content=msgspec.json.encode(definition), params=params
        )
        return self._decode(response, RegisteredAgent)

    async def heartbeat(self, agent_id: str) -> RegisteredAgent:
        response = await self._send("POST", f"/agents/{agent_id}/heartbeat", agent_id=agent_id)
        return self._decode(response, RegisteredAgent)

    async def deregister(self, agent_id: str) -> None:
        await self._send("DELETE", f"/agents/{agent_id}", agent_id=agent_id)

    async def get_agent(self, agent_id: str) -> RegisteredAgent:
        response = await self._send("GET", f"/agents/{agent_id}", agent_id=agent_id)
        return self._decode(response, RegisteredAgent)

    async def discover(
        self,
        capabilities: Sequence[str] = (),
        *,
        match: MatchMode = "all",
        role: str | None = None,
        tier: int | None = None,
        healthy_only: bool = True,
    ) -> list[RegisteredAgent]:
        request = DiscoveryRequest(
            capabilities=list(capabilities),
            match=match,
            role=role,
            tier=tier,
            healthy_only=healthy_only,
        )
        response = await self._send("POST", "/discover", content=msgspec.json.encode(request))
        return self._decode(response, DiscoveryResponse).agents

    async def list_agents(self, *, index: int | None = None, wait_s: float = 60.0) -> AgentList:
        """The catalog; with ``index``, block until it changes past that index or ``wait_s``."""
        params: dict[str, Any] = {}
        timeout: httpx.Timeout | None = None
        if index is not None:
            params = {"index": index, "wait": f"{wait_s:g}s"}
            # The server may hold the request for wait_s (plus Consul-like jitter).
            timeout = httpx.Timeout(self._http.timeout.connect, read=wait_s * 1.1 + 5)
        response = await self._send("GET", "/agents", params=params, request_timeout=timeout)
        return self._decode(response, AgentList)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        agent_id: str | None = None,
        request_timeout: httpx.Timeout | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            return await self._request(method, path, request_timeout=request_timeout, **kwargs)
        except RegistryError as exc:
            if exc.status_code == 404 and agent_id is not None:
                raise AgentNotFound(agent_id) from None
            raise


class AgentRegistration:
    """Keep ``definition`` registered while the owning service runs."""

    def __init__(
        self,
        client: RegistryClient,
        definition: AgentDefinition,
        *,
        ttl_s: float = 30.0,
        retry_wait_max_s: float = 10.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("an AgentRegistration needs a positive TTL to heartbeat against")
        self._client = client
        self.definition = definition
        self._ttl_s = ttl_s
        self._retry_wait_max_s = retry_wait_max_s
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    def start(self) -> None:
        """Begin in the background; returns at once even when the registry is down."""
        if self._task is None:
            self._task = asyncio.create_task(self._keep_registered(), name="agent-registration")

    async def stop(self, *, deregister_timeout_s: float = 2.0) -> None:
        """Stop heartbeating and deregister (best effort, bounded in time)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.registered.is_set():
            self.registered.clear()
            try:
                async with asyncio.timeout(deregister_timeout_s):
                    await self._client.deregister(self.definition.agent_id)
            except (TimeoutError, RegistryUnavailable, RegistryError) as exc:
                logger.warning(
                    "deregistration failed; the registry will expire the agent by TTL",
                    agent_id=self.definition.agent_id,
                    error=str(exc),
                )

    async def _keep_registered(self) -> None:
        try:
            await self._register_and_heartbeat()
        except RegistryError as exc:
            # A 4xx will not heal by retrying (bad token, invalid definition): say so loudly.
            logger.error(  # noqa: TRY400  (a refusal, not a crash: no traceback)
                "registry refused the agent; it stays unregistered",
                agent_id=self.definition.agent_id,
                status=exc.status_code,
                detail=exc.detail,
            )

    async def _register_and_heartbeat(self) -> None:
        agent_id = self.definition.agent_id
        while True:
            await self._register_until_accepted()
            while True:
                await asyncio.sleep(self._ttl_s / 3)
                try:
                    await self._heartbeat()
                except AgentNotFound:
                    logger.warning(
                        "registry forgot the agent; registering again", agent_id=agent_id
                    )
                    self.registered.clear()
                    break

    async def _register_until_accepted(self) -> None:
        async for attempt in stamina.retry_context(
            on=RegistryUnavailable,
            attempts=None,
            timeout=None,
            wait_initial=0.2,
            wait_max=self._retry_wait_max_s,
        ):
            with attempt:
                if attempt.num > 1:
                    logger.info(
                        "registry unreachable; retrying registration",
                        agent_id=self.definition.agent_id,
                        attempt=attempt.num,
                    )
                await self._client.register(self.definition, ttl_s=self._ttl_s)
        self.registered.set()
        logger.info(
            "registered with the registry",
            agent_id=self.definition.agent_id,
            registry=self._client.base_url,
        )

    async def _heartbeat(self) -> None:
        async for attempt in stamina.retry_context(
            on=RegistryUnavailable,
            attempts=None,
            timeout=None,
            wait_initial=0.2,
            wait_max=min(self._retry_wait_max_s, self._ttl_s / 3),
        ):
            with attempt:
                await self._client.heartbeat(self.definition.agent_id)
