"""Workflow events on Kafka and the LangGraph runner's HTTP bodies.

The event envelope is the spec's (Milestone 1.6): ``event_id``, ``event_type``, ``timestamp``,
``source``, ``workflow_id``, ``workflow_run_id``, ``payload``, ``metadata``. Airflow (or anyone)
publishes ``workflow.triggered`` to ``workflow-events``; the runner answers on
``workflow-results`` with ``workflow.completed`` or ``workflow.failed`` carrying the same
``event_id`` and ``workflow_run_id`` and, as ``payload``, the run's :class:`RunOutcome`. Runs
started over REST are answered there too (with Kafka configured): their ``event_id`` and
``workflow_run_id`` are the run's id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from libs.common.schemas.agents import Capability
from libs.common.schemas.llm import TopP
from libs.common.schemas.patterns import TEXT_END

EVENT_TRIGGERED: Final = "workflow.triggered"
EVENT_COMPLETED: Final = "workflow.completed"
EVENT_FAILED: Final = "workflow.failed"
RUNNER_SOURCE: Final = "langgraph_runner"

# Ids in ASCII spelled out, not \w: Python's takes Unicode letters, the published JSON Schema's
# (ECMA) does not.
EventId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+" + TEXT_END)
]
WorkflowId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*" + TEXT_END)
]
# Airflow's run ids hold ':', '+' and '.' ("manual__2025-01-27T10:00:00+00:00"); only control
# characters are refused, since the id is a Kafka key and a log field.
WorkflowRunId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=250, pattern=r"^[^\x00-\x1f]+" + TEXT_END)
]
# Not dots alone: "." and ".." are path segments every HTTP client resolves away, so the run's
# URLs would name another resource.
RunId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^(?!\.+" + TEXT_END + r")[A-Za-z0-9_.-]+" + TEXT_END,
    ),
]
Source = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]

RunStatusName = Literal["pending", "running", "success", "error", "interrupted", "cancelled"]
TERMINAL_STATUSES: Final[frozenset[str]] = frozenset({"success", "error", "cancelled"})
"""A run in one of these states stays there unless an operator resumes it (error only)."""


# --- Kafka events ---------------------------------------------------------------------------


class WorkflowTriggered(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``workflow.triggered`` on ``workflow-events``: run ``workflow_id`` on ``payload``.

    ``timestamp`` may be naive (the spec writes ``datetime.utcnow().isoformat()``); it is read
    as UTC. ``payload`` is the workflow's input (its schema is in ``GET /workflows``).
    """

    event_id: EventId
    event_type: Literal["workflow.triggered"]
    timestamp: datetime
    source: Source
    workflow_id: WorkflowId
    workflow_run_id: WorkflowRunId
    payload: dict[str, Any]
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class LLMUsage(msgspec.Struct, kw_only=True):
    """What a run's LLM nodes used, summed over every call (retries and resumes included)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """What the calls cost, in USD: as the endpoint stated it, else priced by the runner's
    ``RUNNER_LLM_PRICES`` (0 for a model without a price)."""


class RunOutcome(msgspec.Struct, kw_only=True):
    """How a run ended: the ``payload`` of ``workflow.completed`` and ``workflow.failed``."""

    run_id: RunId
    status: Literal["success", "error", "cancelled"]
    output: dict[str, Any] | None = None
    error: str | None = None
    steps: int
    started_at: datetime | None
    finished_at: datetime
    duration_ms: float
    """Time spent running (the run's ``running_ms``): an interrupt's wait, or a runner's
    downtime before the run resumed, not included. For a run recorded before that was kept,
    ``finished_at`` minus ``started_at``."""
    parameters_version: str | None = None
    """The workflow definition version the run used (the version manager's), if any."""
    usage: LLMUsage = msgspec.field(default_factory=LLMUsage)
    cost: float = 0.0
    """USD: the sum of the run's LLM call costs (``usage.cost_usd``), read by the version
    manager as the outcome's cost."""
    score: float | None = None
    """How good a successful run's output is, when its workflow scores it (higher is better;
    the version manager's ``score`` metric)."""
    omitted_output_bytes: int | None = None
    """Set when ``output`` was left out of this event, its size as JSON: with it the event
    would not fit a Kafka record (1 MiB). The run keeps it: ``GET /runs/{run_id}``."""


class WorkflowResult(msgspec.Struct, kw_only=True):
    """``workflow.completed`` / ``workflow.failed`` on ``workflow-results``.

    Keyed by ``workflow_run_id`` like the trigger (a run started over REST: its run id, which
    is then its ``event_id`` too). At least once: a consumer that must act once
    drops a second result with the same ``event_id`` (a run resumed after a failure publishes
    its new outcome under the same ``event_id``; the latest one counts).
    """

    event_id: EventId
    event_type: Literal["workflow.completed", "workflow.failed"]
    timestamp: datetime
    source: Source = RUNNER_SOURCE
    workflow_id: WorkflowId
    workflow_run_id: WorkflowRunId
    payload: RunOutcome
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


# --- HTTP bodies ----------------------------------------------------------------------------


PROMPT_MAX_CHARS: Final = 100_000
MODEL_NAME_MAX_CHARS: Final = 256
"""What a prompt and a model name may hold, in a run's parameters and in a version's definition
alike: a version the version manager takes is one the runner runs."""
STOP_SEQUENCE_MAX_CHARS: Final = 64
STOP_SEQUENCES_MAX: Final = 8
"""How long one stop sequence, and how many, in a run's parameters and a version's alike."""
StopSequences = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=STOP_SEQUENCE_MAX_CHARS)]],
    msgspec.Meta(max_length=STOP_SEQUENCES_MAX),
]
"""Stop sequences of LLM calls, a run's and a version's alike: none empty. An empty one asks
nothing a model can do (it is found before every character): a backend passes it over, refuses
the call or stops at once. Taken until 2026-12-07; what was stored with one then (a version, a
run's record) is read without it (``empty_stops.py``)."""
CallTimeout = Annotated[float, msgspec.Meta(gt=0, le=3600)]
"""Seconds one LLM call may take, in a run's parameters and a version's alike."""


class WorkflowParameters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What may change between versions of a workflow without changing its graph: the model,
    generation parameters and prompts (by the prompt names ``GET /workflows`` lists).

    The seam for the version manager: a run takes these from the request, or from the
    definition source the runner is configured with.
    """

    version: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_NAME_MAX_CHARS)] | None = None
    capability: Capability | None = None
    """Ask the provider router for a model with this capability instead of naming one (the
    runner on the OpenAI-compatible API; an Ollama API serves models by name only). Not with
    ``model``: the router routes by capability whenever one is given, so both would ask two
    things and get one."""
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=2.0)] | None = None
    top_p: TopP | None = None
    max_tokens: Annotated[int, msgspec.Meta(ge=16, le=8192)] | None = None
    seed: int | None = None
    """``None``: seed 0, so that a run asked again answers the same."""
    stop: StopSequences = msgspec.field(default_factory=list)
    """The model stops before the first of these it would write (the answer leaves it out)."""
    timeout_s: CallTimeout | None = None
    """How long one LLM call may take, its whole answer read (``None``: the runner's
    ``RUNNER_LLM_TIMEOUT_S``); a call past it fails as a timeout, retried as the node's
    retry policy says."""
    prompts: dict[str, Annotated[str, msgspec.Meta(min_length=1, max_length=PROMPT_MAX_CHARS)]] = (
        msgspec.field(default_factory=dict)
    )

    def __post_init__(self) -> None:
        if self.model is not None and self.capability is not None:
            raise ValueError(
                f"give a model ({self.model!r}) or a capability ({self.capability!r}), not both"
            )


MODEL_OR_CAPABILITY_SCHEMA: Final[dict[str, Any]] = {
    "not": {
        "type": "object",
        "required": ["model", "capability"],
        "properties": {"model": {"type": "string"}, "capability": {"type": "string"}},
    }
}
"""A JSON Schema's "a model or a capability, not both", for a type whose ``__post_init__``
refuses both (msgspec's schema cannot say it), so that what the schema takes is what the
service takes: the runner's parameters, the router's ``/route``."""

RunParameters = Annotated[
    WorkflowParameters | None,
    # Said on the union (the whole field's rule); on the Struct, msgspec would write it beside
    # the Struct's $ref, which inline_schema keeps as well.
    msgspec.Meta(extra_json_schema=MODEL_OR_CAPABILITY_SCHEMA),
]
"""A request's parameters: a model or a capability, not both."""


class RunRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /workflows/{id}/runs``: the workflow's input and how to run it."""

    input: dict[str, Any] = msgspec.field(default_factory=dict)
    run_id: RunId | None = None
    """Choose the run's id (it becomes the checkpoint thread id); taken ids are refused."""
    parameters: RunParameters = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class ResumeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /runs/{id}/resume``: the answer to an interrupt, or nothing to retry a failed run
    from its last checkpoint."""

    resume: Any = msgspec.UNSET
    interrupt_id: str | None = None
    """Answer one interrupt by id when several are pending (default: the only one)."""


class PendingInterrupt(msgspec.Struct, kw_only=True):
    """What an interrupted run asks; answer it with ``POST /runs/{id}/resume``."""

    id: str
    value: Any
    response_schema: dict[str, Any] | None = None


class RunStatus(msgspec.Struct, kw_only=True):
    """``GET /runs/{id}``: where a run is, and what it produced."""

    run_id: RunId
    workflow_id: WorkflowId
    status: RunStatusName
    input: dict[str, Any]
    output: dict[str, Any] | None = None
    error: str | None = None
    steps: int = 0
    """Node executions completed (a node re-run after a crash or retry counts again)."""
    path: list[str] = msgspec.field(default_factory=list)
    """Nodes in the order they completed."""
    interrupts: list[PendingInterrupt] = msgspec.field(default_factory=list)
    attempts: int = 0
    """How many times the run was started or resumed."""
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    running_ms: float | None = None
    """Time spent running, summed over the run's stretches: neither the waits for a slot or
    for a person's answer nor the time between a runner's stop and the run's resumption. A
    stretch a crash cut counts up to its last recorded step (the node it was in runs again).
    ``None`` for a run recorded before this was kept."""
    source: Source = "http"
    event_id: EventId | None = None
    workflow_run_id: WorkflowRunId | None = None
    parameters: WorkflowParameters = msgspec.field(default_factory=WorkflowParameters)
    usage: LLMUsage = msgspec.field(default_factory=LLMUsage)
    score: float | None = None
    """The workflow's score of a successful run's output, if it scores its runs."""
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


class RunList(msgspec.Struct, kw_only=True):
    runs: list[RunStatus]


class WorkflowInfo(msgspec.Struct, kw_only=True):
    """One entry of ``GET /workflows``."""

    id: WorkflowId
    title: str
    description: str
    input_schema: dict[str, Any]
    prompts: dict[str, str]
    """The default prompts by name; ``parameters.prompts`` overrides them per run."""
    nodes: list[str]
    mermaid: str
    """The graph as Mermaid, from ``get_graph().draw_mermaid()``."""


class WorkflowList(msgspec.Struct, kw_only=True):
    workflows: list[WorkflowInfo]


class RunUpdate(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One server-sent event of ``GET /runs/{id}/stream``: a node's update (``event: update``)
    or the run's status when it changes (``event: status``)."""

    run_id: RunId
    node: str | None = None
    step: int | None = None
    update: Any = None
    status: RunStatusName | None = None
