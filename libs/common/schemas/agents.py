"""Agents as the registry stores and serves them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from libs.common.schemas.patterns import TEXT_END

AgentId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*" + TEXT_END,
        description="Unique id: letters, digits and _ . : - (e.g. llm_llama31_8b).",
    ),
]
Capability = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9][a-z0-9_.-]*" + TEXT_END,
        description="A lower-case capability name such as reasoning or classification.",
    ),
]
Role = Annotated[
    str,
    msgspec.Meta(
        min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*" + TEXT_END, examples=["execution"]
    ),
]
METADATA_MAX_NESTING: Final = 64
"""How deep an agent's ``metadata`` may nest (the object itself is one level): deeper, its JSON
may not be read back (msgspec and Python's json give up at about a thousand levels, fewer the
deeper the reader's own stack), and no agent describes itself that deep."""
Tier = Annotated[int, msgspec.Meta(ge=0, le=9, description="0 (strategic) to 9 (leaf worker).")]
# An endpoint's authority, spelled so that every string the pattern takes is one httpx can call
# (the active checks do): a host name, an IPv4 address or a bracketed IPv6 one, and a port in
# 1-65535. ASCII classes only: Python and JSON Schema (ECMA) regexes agree on them, not on \s.
_H16 = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join(
    (
        f"(?:{_H16}:){{7}}{_H16}",
        f"(?:{_H16}:){{1,7}}:",
        f"(?:{_H16}:){{1,6}}:{_H16}",
        f"(?:{_H16}:){{1,5}}(?::{_H16}){{1,2}}",
        f"(?:{_H16}:){{1,4}}(?::{_H16}){{1,3}}",
        f"(?:{_H16}:){{1,3}}(?::{_H16}){{1,4}}",
        f"(?:{_H16}:){{1,2}}(?::{_H16}){{1,5}}",
        f"{_H16}:(?::{_H16}){{1,6}}",
        f":(?:(?::{_H16}){{1,7}}|:)",
    )
)
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
# Digits and dots alone are an IPv4 address or nothing (httpx refuses 999.1.1.1).
_HOST_NAME = r"(?![0-9.]+(?![A-Za-z0-9._~%-]))[A-Za-z0-9._~%-]+"
_PORT = "(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_USER = r"(?:[A-Za-z0-9._~%-]+(?::[A-Za-z0-9._~%-]*)?@)?"
_AUTHORITY = rf"{_USER}(?:{_HOST_NAME}|{_IPV4}|\[(?:{_IPV6})\])(?::{_PORT})?"
ENDPOINT_PATTERN: Final = (
    rf"^(?:https?|kafka|grpc|wss?)://{_AUTHORITY}(?:[/?#][^\x00-\x1f\x7f]*)?" + TEXT_END
)
Endpoint = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=2048,
        pattern=ENDPOINT_PATTERN,
        description="Where the agent answers, e.g. http://localhost:8050: http(s), kafka, grpc "
        "or ws(s), a host name or IP address, a port in 1-65535, then a path if any.",
    ),
]
Transport = Literal["rest", "kafka", "grpc", "websocket"]
AgentStatus = Literal["passing", "critical"]
MatchMode = Literal["all", "any"]


class AgentDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An agent as it describes itself, exactly the spec's JSON."""

    agent_id: AgentId
    # No U+0000: PostgreSQL's JSONB cannot hold it (a 500 there until 2026-12-06).
    name: Annotated[
        str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[^\x00]*" + TEXT_END)
    ]
    tier: Tier
    role: Role
    capabilities: Annotated[list[Capability], msgspec.Meta(max_length=256)]
    endpoint: Endpoint
    transport: Transport = "rest"
    cost_per_1k_tokens: Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)] = 0.0
    # Nested at most METADATA_MAX_NESTING levels, without U+0000 (the registry checks both).
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class RegisteredAgent(AgentDefinition, kw_only=True, forbid_unknown_fields=False):
    """An agent in the catalog: its definition plus the registry's view of its health."""

    status: AgentStatus
    status_reason: str | None = None
    ttl_s: float
    registered_at: datetime
    last_heartbeat_at: datetime
    critical_since: datetime | None = None
    modify_index: int = 0


class DiscoveryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Which agents to find: by capability, and optionally by role, tier and health."""

    capabilities: Annotated[list[Capability], msgspec.Meta(max_length=64)] = msgspec.field(
        default_factory=list
    )
    match: MatchMode = "all"
    role: Role | None = None
    tier: Tier | None = None
    healthy_only: bool = True


class DiscoveryResponse(msgspec.Struct, kw_only=True):
    agents: list[RegisteredAgent]
    index: int


class AgentList(msgspec.Struct, kw_only=True):
    """The whole catalog at ``index``; pass ``index`` back to wait for the next change."""

    agents: list[RegisteredAgent]
    index: int
