"""The registry's settings, read from ``REGISTRY_*`` variables."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from libs.common.constants import REGISTRY_PORT
from libs.common.kit import ServiceSettings

PositiveSeconds = Annotated[float, msgspec.Meta(gt=0)]


class RegistrySettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "REGISTRY_"

    port: int = REGISTRY_PORT
    database_url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:///.+|postgres(ql)?://.+)$")] = (
        "sqlite:///.pas/data/registry.db"
    )
    """``sqlite:///path``, ``sqlite:///:memory:`` or a ``postgresql://`` DSN."""
    token: str | None = None
    """When set, register, heartbeat and delete need ``Authorization: Bearer <token>``."""
    default_ttl_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    """TTL of a registration that does not ask for one; 0 means no TTL check."""
    deregister_critical_after_s: PositiveSeconds = 300.0
    """How long an agent may stay critical before it is removed from the catalog."""
    reap_interval_s: PositiveSeconds = 1.0
    active_check_interval_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """When > 0, GET ``endpoint + /health`` of every REST agent at this interval."""
    active_check_timeout_s: PositiveSeconds = 2.0
    max_wait_s: PositiveSeconds = 600.0
    """Upper bound for a blocking query's ``wait``."""
