"""The router's settings, read from ``ROUTER_*`` variables."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from libs.common.constants import DEFAULT_REGISTRY_URL, PROVIDER_ROUTER_PORT, TOPIC_LLM_USAGE
from libs.common.kit import ServiceSettings

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class RouterSettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "ROUTER_"
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        "registry_url": ("REGISTRY_URL",),
        "registry_token": ("REGISTRY_TOKEN", "PAS_TOKEN"),
        "local_token": ("LLM_TOKEN", "PAS_TOKEN"),
        "kafka_bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
    }

    port: int = PROVIDER_ROUTER_PORT
    max_body_bytes: int = 33_554_432
    """A chat request may carry images as base64 data URLs (Anthropic takes up to 32 MB a
    request, OpenAI 20 MB an image)."""
    database_url: Annotated[str, msgspec.Meta(pattern=r"^(sqlite:///.+|postgres(ql)?://.+)$")] = (
        "sqlite:///.pas/data/router.db"
    )
    """Where spend and budgets persist: ``sqlite:///path``, ``sqlite:///:memory:`` or a
    ``postgresql://`` DSN (routers sharing one database share their budgets, rate limits and
    the pauses providers ask for)."""
    spend_sync_s: Seconds = 1.0
    """How often spend is written to the database and every router's spend read back, and
    how often routers tell each other their calls and pauses (``shared_pace.py``)."""
    spend_retention_days: Annotated[float, msgspec.Meta(gt=0)] = 90.0
    """Spend records older than this are deleted (``GET /costs`` cannot look further back)."""
    registry_url: str = DEFAULT_REGISTRY_URL
    registry_token: str | None = None
    local_token: str | None = None
    """Sent as a bearer token to local PAS LLM services (their ``LLM_TOKEN``)."""
    use_registry: bool = True
    """Discover local LLM agents from the registry (watching it for changes)."""
    providers_file: str | None = None
    """TOML file of remote providers (see deploy/providers.example.toml)."""
    files_poll_s: Annotated[float, msgspec.Meta(ge=0)] = 2.0
    """How often the providers and keys files are looked at; a changed one is taken again
    without a restart (``file_watch.py``). 0: never."""
    keys_file: str | None = None
    """TOML file of desk keys: a token per desk or team, each with what it may ask, a daily
    budget and a pace (see deploy/keys.example.toml and ``pas key new``); with it, every
    routed request needs a key's token or the router's."""
    request_timeout_s: Seconds = 120.0
    """Per attempt at one candidate; past it the router falls back."""
    connect_timeout_s: Seconds = 2.0
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 1
    """Extra attempts at the same candidate after a timeout, 5xx or 429, with backoff."""
    retry_backoff_s: Seconds = 0.05
    breaker_failures: Annotated[int, msgspec.Meta(ge=1)] = 3
    """Consecutive failures that open a candidate's circuit."""
    breaker_cooldown_s: Seconds = 30.0
    ewma_alpha: Annotated[float, msgspec.Meta(gt=0, le=1)] = 0.3
    cost_window_s: Seconds = 86_400.0
    cache_ttl_s: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    """How long an answer at temperature 0 (or embeddings) is kept for the same request asked
    again; 0 keeps none."""
    cache_mb: Annotated[float, msgspec.Meta(gt=0)] = 64.0
    """Memory the kept answers may take, least recently used dropped first."""
    kafka_bootstrap_servers: str | None = None
    """When set, one usage event per LLM call goes to ``usage_topic`` (never blocking a call)."""
    usage_topic: str = TOPIC_LLM_USAGE
