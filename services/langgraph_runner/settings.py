"""The runner's settings, read from ``RUNNER_*`` variables (and ``KAFKA_BOOTSTRAP_SERVERS``)."""

from __future__ import annotations

import os
import socket
from typing import Annotated, ClassVar, Literal

import msgspec

from libs.common.constants import (
    LANGGRAPH_RUNNER_PORT,
    LLAMA31_8B_PORT,
    TOPIC_WORKFLOW_EVENTS,
    TOPIC_WORKFLOW_EVENTS_DLQ,
    TOPIC_WORKFLOW_RESULTS,
)
from libs.common.errors import SettingsError
from libs.common.kit import ServiceSettings
from libs.common.settings import POSTGRES_EXTRA, require_postgres_extra

Positive = Annotated[float, msgspec.Meta(gt=0)]
Price = Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)]
LLMApi = Literal["ollama", "openai"]
Durability = Literal["sync", "async", "exit"]


def unique_instance() -> str:
    """This host's name and this process's id: unique among replicas sharing a store (each
    has its host or its pid), and the same for a container restarted in place (same host
    name, pid 1), which then resumes its own runs at once."""
    return f"{socket.gethostname()[:50]}-{os.getpid()}"


class ModelPrice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """USD per 1,000 prompt and completion tokens of one model (as the router's providers
    file prices them), and per 1,000 prompt tokens its server took from a prompt cache or
    wrote to one (``None``: what any prompt token costs)."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    input_per_1k: Price = 0.0
    output_per_1k: Price = 0.0
    cached_input_per_1k: Price | None = None
    cache_write_per_1k: Price | None = None


class RunnerSettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "RUNNER_"
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
        "versioning_url": ("VERSIONING_URL",),
        "versioning_token": ("VERSIONING_TOKEN",),
    }

    port: int = LANGGRAPH_RUNNER_PORT
    token: str | None = None
    """When set, starting, resuming and cancelling runs need ``Authorization: Bearer <token>``."""

    # -- models ---------------------------------------------------------------------------
    llm_api: LLMApi = "ollama"
    """``ollama``: ChatOllama on an Ollama-compatible API (a PAS LLM service, or Ollama).
    ``openai``: an OpenAI-compatible ``/v1`` (the provider router, a PAS LLM service, vLLM)."""
    llm_url: str = f"http://localhost:{LLAMA31_8B_PORT}"
    llm_model: str = "llama3.1:8b"
    llm_capability: str | None = None
    """With ``openai`` on the provider router: route by this capability instead of the model."""
    llm_api_key: str | None = None
    """Sent as ``Authorization: Bearer <key>`` on either API (a PAS LLM service's or the
    router's token, an OpenAI key, an authenticating proxy in front of Ollama)."""
    llm_timeout_s: Positive = 120.0
    llm_temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] = 0.0
    llm_max_tokens: Annotated[int, msgspec.Meta(ge=16, le=8192)] = 512
    """Upper bound on tokens per LLM call; nodes ask for less where their answer is short. Below
    400, document analysis's JSON answer may be cut short (and the run fail)."""
    llm_prices: list[ModelPrice] = msgspec.field(default_factory=list)
    """What LLM calls cost, by the model name the endpoint answers with (a JSON list of
    ``{"model", "input_per_1k", "output_per_1k"}``): a run's ``usage.cost_usd`` and its
    outcome's ``cost``. An endpoint that states a call's cost (``usage.cost``) is believed
    instead; a model without a price costs 0."""

    # -- versions ---------------------------------------------------------------------------
    versioning_url: str | None = None
    """The version manager: runs take their workflow's ``champion`` definition (or the version
    an experiment assigns) and record the version they ran."""
    versioning_token: str | None = None

    # -- durability ------------------------------------------------------------------------
    checkpoint_path: str = ".pas/data/runner-checkpoints.db"
    """SQLite file of LangGraph checkpoints (AsyncSqliteSaver)."""
    store_path: str = ".pas/data/runner.db"
    """SQLite file of run records (status, output, steps) and the event ids seen."""
    checkpoint_dsn: str | None = None
    """A PostgreSQL DSN: checkpoints (AsyncPostgresSaver) and run records go there instead."""
    durability: Durability = "sync"
    """``sync`` writes each step's checkpoint before the next step starts, so a crash never
    re-runs a completed node; ``async`` overlaps the write with the next step (faster, may
    re-run the last node after a crash); ``exit`` writes only when the run stops."""
    instance: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = msgspec.field(
        default_factory=unique_instance
    )
    """Name of this runner in the store (default: host name and process id). Unique per
    replica sharing one store: runs it holds are leased to this name. At start it resumes
    the unfinished runs leased to its name at once (a stable name, e.g. a StatefulSet pod's,
    restarted); any other's only once their lease expired."""
    lease_ttl_s: Positive = 20.0
    """How long a run stays leased to its replica without a renewal: a replica that dies
    (SIGKILL, lost host) has its runs taken over by another this long after its last renewal."""
    lease_renew_s: Positive = 5.0
    """How often a replica renews its leases (one statement) and looks for runs whose lease
    expired, to take over. Well under ``lease_ttl_s``."""

    # -- runs -------------------------------------------------------------------------------
    max_concurrent_runs: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 8
    recursion_limit: Annotated[int, msgspec.Meta(ge=4, le=10_000)] = 50
    node_max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    """Attempts per node for transient errors (connection, timeout, 5xx, 429)."""
    node_retry_initial_s: Positive = 0.5
    node_retry_max_s: Positive = 10.0
    """The longest wait between a node's attempts, and the longest ``Retry-After`` an LLM call
    (OpenAI-compatible API) waits for before it is tried once more."""
    max_wait_s: Positive = 300.0
    """Longest ``wait=true`` blocks before answering 202 with the run still going."""
    drain_timeout_s: Positive = 10.0
    """On shutdown, runs stop at their next step boundary; after this long they are cancelled.
    Either way they stay ``running`` in the store and resume at the next start."""
    market_data_path: str | None = None
    """Price history the tool agent reads (default: the sample shipped in ``data/``)."""
    extra_workflows: list[str] = msgspec.field(default_factory=list)
    """More workflows, as ``module:attribute`` naming a ``WorkflowSpec`` (comma-separated)."""

    # -- Kafka bridge (on when bootstrap_servers is set) -------------------------------------
    bootstrap_servers: str | None = None
    events_topic: str = TOPIC_WORKFLOW_EVENTS
    results_topic: str = TOPIC_WORKFLOW_RESULTS
    dlq_topic: str = TOPIC_WORKFLOW_EVENTS_DLQ
    group_id: str = "pas-langgraph-runner"
    max_event_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_000_000
    max_result_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_000_000
    """An outcome event (on ``results_topic``) larger than this goes out without its output,
    which the run keeps (``GET /runs/{id}``): a Kafka record carries 1 MiB by default, and a
    larger one would be refused at every try. Raise it with the broker's ``message.max.bytes``
    (the producer takes this plus 64 KiB for the key and the trigger's headers)."""
    max_events_in_flight: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    commit_interval_s: Positive = 1.0
    outbox_interval_s: Positive = 2.0
    """How often results not yet on ``workflow-results`` are looked for (also on every finish)."""
    session_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=300)] = 10.0
    """How soon the group notices a runner that died and gives its partitions to another."""
    max_poll_interval_s: Positive = 1800.0
    """An event holds its slot until its run finishes; while every slot is busy the consumer
    does not poll, so this must exceed the longest run (or the group evicts the consumer)."""

    def __post_init__(self) -> None:
        if self.checkpoint_dsn:
            # Here, not when the lifespan opens the store: a line naming the variable, not a
            # traceback.
            require_postgres_extra(
                "RUNNER_CHECKPOINT_DSN",
                modules=(*POSTGRES_EXTRA, "langgraph.checkpoint.postgres"),
            )
        if self.llm_capability is not None and self.llm_api == "ollama":
            # Else the capability was left unused without a word: every call asked the
            # default model by name, which is not what the setting says.
            raise SettingsError(
                "RUNNER_LLM_CAPABILITY",
                "a capability is routed by the provider router's OpenAI-compatible API "
                "(RUNNER_LLM_API=openai); the Ollama API serves a model by name "
                "(RUNNER_LLM_MODEL)",
            )
        if self.lease_renew_s >= self.lease_ttl_s:
            raise ValueError(
                f"lease_renew_s ({self.lease_renew_s}) must be under lease_ttl_s "
                f"({self.lease_ttl_s}): leases would expire before they are renewed"
            )
