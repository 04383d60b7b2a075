"""Workflow versions, aliases and A/B experiments, as the version manager (6140) serves them.

A *workflow definition* parameterises one graph of the LangGraph runner: its prompts, the
capability or model it asks, generation parameters and free metadata. Each saved definition is
an immutable, numbered *version*; *aliases* (``champion``, ``staging``, ...) are movable names
for versions, ``latest`` always names the newest one. An *experiment* splits the runs of one
workflow between versions by a sticky hash of a unit key and tests which version does better.

The module passes 400 lines because it holds every wire type of the version manager (one
module a service, as for the rest of ``schemas/``), nearly all short Structs documented field
by field. Its sections follow the service's parts: names, definitions and versions,
experiments, the result events read from Kafka, and the stateless assignment.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec

from libs.common.schemas.agents import Capability
from libs.common.schemas.llm import MaxTokens, Temperature, TopP
from libs.common.schemas.patterns import TEXT_END
from libs.common.schemas.workflows import (
    MODEL_NAME_MAX_CHARS,
    PROMPT_MAX_CHARS,
    CallTimeout,
    StopSequences,
)

# --- names -----------------------------------------------------------------------------------

WorkflowId = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        # Also a file name and part of a git tag: no dots, slashes or spaces.
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*" + TEXT_END,
        description="A LangGraph runner graph id: letters, digits, _ and - (e.g. doc_analysis).",
        examples=["doc_analysis"],
    ),
]
Version = Annotated[int, msgspec.Meta(ge=1, description="Version number, 1, 2, ... per workflow.")]
AliasName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_-]*" + TEXT_END,
        description="A movable name for a version, such as champion or staging.",
        examples=["champion"],
    ),
]
PromptName = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*" + TEXT_END),
]
CommitMessage = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=10_000,
        # Control characters other than tab and newline do not belong in a git message. At
        # least one character must be more than whitespace: git keeps no blank message, and
        # one of spaces only would leave the PAS-* trailers at the very start of the commit.
        pattern=r"^(?=\s*\S)[^\x00-\x08\x0b-\x1f\x7f]*" + TEXT_END,
        description="Why this change was made; becomes the git commit message. Holds at "
        "least one character other than whitespace.",
    ),
]
ExperimentId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*" + TEXT_END)
]
VariantName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*" + TEXT_END,
        examples=["A"],
    ),
]
Unit = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        description="What assignment sticks to: a document id, a desk, a user.",
        examples=["doc-2024-10-K-AAPL"],
    ),
]
Salt = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+" + TEXT_END)
]
Metric = Literal["success_rate", "latency_ms", "score"]
ExperimentStatus = Literal["running", "stopped"]
SignificanceTest = Literal["chi-square", "fisher-exact", "welch-t"]

LATEST: Final = "latest"
"""The alias every workflow has: its newest version. It cannot be moved."""
CHAMPION: Final = "champion"
"""The alias the LangGraph runner runs by default, and the one auto-promotion moves."""

# --- workflow definitions --------------------------------------------------------------------


class GenerationParameters(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """How the workflow's LLM calls generate; ``None`` leaves the backend's default."""

    temperature: Temperature | None = None
    top_p: TopP | None = None
    max_tokens: MaxTokens | None = None
    seed: int | None = None
    stop: StopSequences = msgspec.field(default_factory=list)
    timeout_s: CallTimeout | None = None
    """How long one of the workflow's LLM calls may take."""


class WorkflowDefinition(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One version's document. Unknown keys are refused, so that a typo never goes unseen."""

    workflow_id: WorkflowId
    """The LangGraph runner graph this definition parameterises."""
    description: Annotated[str, msgspec.Meta(max_length=2_000)] = ""
    prompts: Annotated[
        dict[PromptName, Annotated[str, msgspec.Meta(max_length=PROMPT_MAX_CHARS)]],
        msgspec.Meta(max_length=64),
    ] = msgspec.field(default_factory=dict)
    """Prompt templates by name (a node of the graph, or ``system``)."""
    capability: Capability | None = None
    """Ask the provider router for this capability (used when ``model`` is not set)."""
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=MODEL_NAME_MAX_CHARS)] | None = None
    """Ask this model by name."""
    parameters: GenerationParameters = msgspec.field(default_factory=GenerationParameters)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


# What git strips from both ends of an identity's name and email (its ``crud``: every byte up to
# the space, and . , : ; < > " \ '), and what it refuses anywhere in them (angle brackets,
# control characters). A name of crud alone fails the commit; crud at an end is dropped, so the
# history would show another name than the one given. Both are refused up front instead.
_IDENTITY_END = r"""[^\x00-\x20.,:;<>"\\'\x7f]"""
_IDENTITY_INSIDE = r"[^<>\x00-\x1f\x7f]"
_EMAIL_END = r"""[^\x00-\x20.,:;<>"\\'\x7f@]"""
_EMAIL_INSIDE = r"[^<>@\s\x00-\x1f\x7f]"


IdentityName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=128,
        pattern=f"^{_IDENTITY_END}(?:{_IDENTITY_INSIDE}*{_IDENTITY_END})?{TEXT_END}",
        description="A git identity's name: begins and ends with a character git keeps.",
    ),
]
IdentityEmail = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=f"^{_EMAIL_END}{_EMAIL_INSIDE}*@{_EMAIL_INSIDE}*{_EMAIL_END}{TEXT_END}",
        description="A git identity's email: one @, begins and ends with a character git keeps.",
    ),
]


class Author(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Who made a change; becomes the git commit's author, exactly as given."""

    name: IdentityName
    email: IdentityEmail


class CreateVersionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    definition: WorkflowDefinition
    author: Author
    message: CommitMessage
    aliases: Annotated[list[AliasName], msgspec.Meta(max_length=16)] = msgspec.field(
        default_factory=list
    )
    """Aliases to point at the new version in the same commit. The first version of a workflow
    becomes ``champion`` whether listed or not."""


class VersionInfo(msgspec.Struct, kw_only=True):
    """One version in a workflow's history: its git tag and commit, who made it and why."""

    workflow_id: str
    version: int
    tag: str
    commit: str
    author: Author
    message: str
    created_at: datetime
    aliases: list[str] = msgspec.field(default_factory=list)
    restored_from: int | None = None
    """For a rollback: the version whose content this one restores."""


class WorkflowVersion(VersionInfo, kw_only=True):
    """A version with its definition."""

    definition: WorkflowDefinition


class VersionHistory(msgspec.Struct, kw_only=True):
    workflow_id: str
    aliases: dict[str, int]
    versions: list[VersionInfo]
    """Newest first."""


class WorkflowSummary(msgspec.Struct, kw_only=True):
    workflow_id: str
    latest: int
    versions: int
    aliases: dict[str, int]
    latest_created_at: datetime


class WorkflowList(msgspec.Struct, kw_only=True):
    workflows: list[WorkflowSummary]


class MoveAliasRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    author: Author | None = None
    """Default: the version manager's own identity."""
    message: CommitMessage | None = None


class AliasMove(msgspec.Struct, kw_only=True):
    workflow_id: str
    alias: str
    version: int
    previous: int | None
    changed: bool
    """False when the alias already pointed at ``version`` (nothing was committed)."""
    commit: str | None
    moved_at: datetime


class RollbackRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: Version
    """The version whose content comes back."""
    author: Author
    message: CommitMessage | None = None
    """Why; added to the commit message, which names the version restored in any case."""


class PathValue(msgspec.Struct, kw_only=True):
    path: str
    """A JSON Pointer (RFC 6901) into the definition, such as ``/prompts/system``."""
    value: Any


class PathChange(msgspec.Struct, kw_only=True):
    path: str
    old: Any
    new: Any


class VersionComparison(msgspec.Struct, kw_only=True):
    workflow_id: str
    v1: int
    v2: int
    added: list[PathValue]
    """In ``v2``, not in ``v1``."""
    removed: list[PathValue]
    """In ``v1``, not in ``v2``."""
    modified: list[PathChange]
    unified_diff: str
    """``git diff`` of the definition file between the two versions' commits."""


# --- experiments -----------------------------------------------------------------------------

Weight = Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]


class ExperimentRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    workflow_id: WorkflowId
    variants: Annotated[dict[VariantName, Version], msgspec.Meta(min_length=2, max_length=10)]
    """Variant name -> version of the workflow it runs."""
    split: dict[VariantName, Weight] | None = None
    """Share of units per variant, summing to 1. Default: an equal split."""
    metric: Metric = "success_rate"
    """What decides the winner; the other metrics are tested and reported too."""
    min_samples: Annotated[int, msgspec.Meta(ge=2, le=10_000_000)] = 100
    """Planned outcomes per variant. Significance is claimed only from here on, and
    auto-promotion decides once, on the first ``min_samples`` outcomes of each variant."""
    alpha: Annotated[float, msgspec.Meta(gt=0.0, le=0.5)] = 0.05
    auto_promote: bool = False
    control: VariantName | None = None
    """The variant others are tested against. Default: the first variant name in sort order."""
    salt: Salt | None = None
    """Hash salt of the assignment. Default: random. Reuse one to keep units on the same side
    across experiments."""
    description: Annotated[str, msgspec.Meta(max_length=2_000)] = ""


class Comparison(msgspec.Struct, kw_only=True):
    """One significance test of ``variant`` against ``control`` on one metric."""

    variant: str
    control: str
    metric: Metric
    test: SignificanceTest
    statistic: float | None
    p_value: float | None
    """None when the data cannot be tested (fewer than two outcomes, no variance)."""
    difference: float | None
    """``variant`` minus ``control`` on the metric's mean or rate."""
    alpha: float
    """The threshold used: ``alpha`` divided by the number of comparisons (Bonferroni)."""
    significant: bool
    """``p_value < alpha`` and every variant has ``min_samples`` outcomes."""
    better: bool | None
    """Whether ``variant`` did better than ``control`` (lower is better for latency)."""


class Decision(msgspec.Struct, kw_only=True):
    """The one fixed-horizon decision, made when every variant had ``min_samples`` outcomes."""

    decided_at: datetime
    samples_per_variant: int
    metric: Metric
    winner: str | None
    """The variant significantly better than the others on ``metric``, if any."""
    comparisons: list[Comparison]


class Promotion(msgspec.Struct, kw_only=True):
    variant: str
    version: int
    alias: str
    previous_version: int | None
    commit: str | None
    """The git commit that moved the alias (None if it pointed there already)."""
    promoted_at: datetime


class Experiment(msgspec.Struct, kw_only=True):
    id: str
    workflow_id: str
    variants: dict[str, int]
    split: dict[str, float]
    metric: Metric
    min_samples: int
    alpha: float
    auto_promote: bool
    control: str
    salt: str
    description: str = ""
    status: ExperimentStatus = "running"
    created_at: datetime
    stopped_at: datetime | None = None
    stop_reason: str | None = None
    decision: Decision | None = None
    promotion: Promotion | None = None

    def variant_for(self, unit: str) -> str:
        """The unit's variant: stateless, so every replica and every restart agrees."""
        return variant_for(self.salt, self.split, unit)


class ExperimentList(msgspec.Struct, kw_only=True):
    experiments: list[Experiment]


class StopRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=500)] | None = None


class AssignRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    unit: Unit


class Assignment(msgspec.Struct, kw_only=True):
    experiment_id: str
    workflow_id: str
    unit: str
    variant: str
    version: int


class OutcomeRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What happened in one run of the experiment's workflow."""

    unit: Unit
    variant: VariantName | None = None
    """Checked against the unit's assignment; derived from it when left out."""
    success: bool
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)]
    cost: Annotated[float, msgspec.Meta(ge=0.0, le=1e9)] = 0.0
    score: Annotated[float, msgspec.Meta(ge=-1e12, le=1e12)] | None = None
    outcome_id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    """Idempotency key, such as the workflow run id: an outcome sent again with the same key
    (or seen on Kafka with this ``workflow_run_id``) replaces the earlier one, so a run counts
    once and a resumed run's latest result is the one that counts."""


OutcomeBatch = Annotated[list[OutcomeRequest], msgspec.Meta(min_length=1, max_length=10_000)]


class OutcomeReceipt(msgspec.Struct, kw_only=True):
    experiment_id: str
    recorded: int
    """Outcomes new to the experiment."""
    duplicates: int
    """Outcomes whose ``outcome_id`` was known: they replaced the earlier one."""
    samples: dict[str, int]
    """Outcomes per variant now."""


class VariantResult(msgspec.Struct, kw_only=True):
    variant: str
    version: int
    weight: float
    count: int
    successes: int
    success_rate: float | None
    success_rate_ci95: list[float] | None
    """Wilson score interval."""
    latency_mean_ms: float | None
    latency_p95_ms: float | None
    """Nearest rank."""
    cost_mean: float | None
    scored: int
    score_mean: float | None


class SampleRatioCheck(msgspec.Struct, kw_only=True):
    """Chi-square goodness of fit of the outcome counts against the split: a tiny p-value
    means assignment or logging is broken, and the results should not be trusted."""

    p_value: float
    mismatch: bool
    """p < 0.001, the usual sample ratio mismatch threshold."""


class ExperimentResults(msgspec.Struct, kw_only=True):
    metric: Metric
    alpha: float
    min_samples: int
    ready: bool
    """Every variant has ``min_samples`` outcomes."""
    total: int
    variants: list[VariantResult]
    comparisons: list[Comparison]
    """Each variant against the control, on every metric that can be tested."""
    winner: str | None
    """On ``metric``, over all outcomes so far. Watching this change over time is peeking;
    auto-promotion uses the fixed-horizon ``decision`` instead."""
    sample_ratio: SampleRatioCheck | None


class ExperimentDetail(Experiment, kw_only=True):
    results: ExperimentResults


# --- runs of experiments on Kafka ------------------------------------------------------------

METADATA_EXPERIMENT_ID: Final = "experiment_id"
METADATA_VARIANT: Final = "variant"
METADATA_UNIT: Final = "unit"
METADATA_WORKFLOW_VERSION: Final = "workflow_version"


class ExperimentRunMetadata(msgspec.Struct, kw_only=True):
    """What a run of an experiment carries in its ``workflow-results`` event's ``metadata``
    (``RunPlan.event_metadata()`` of the versioning client gives exactly this)."""

    experiment_id: ExperimentId
    unit: Unit
    variant: VariantName | None = None
    workflow_version: Version | None = None


class RunOutcomeView(msgspec.Struct, kw_only=True):
    """The fields of a result event's ``payload`` (the runner's ``RunOutcome``) read here."""

    status: str | None = None
    duration_ms: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    parameters_version: str | int | None = None
    cost: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    score: float | None = None


class WorkflowResultEvent(msgspec.Struct, kw_only=True):
    """The fields of a ``workflow.completed`` / ``workflow.failed`` event (the runner's
    ``WorkflowResult``) the version manager reads; others are ignored.

    A run is an experiment outcome when ``metadata`` holds an ``experiment_id``. It succeeded
    when ``event_type`` is ``workflow.completed``; its latency is ``payload.duration_ms``; a
    ``payload.cost`` or ``payload.score`` is used when present. Cancelled runs
    (``payload.status`` ``cancelled``) are no outcome of the variant and are passed over.
    """

    event_type: str
    workflow_id: str
    event_id: str | None = None
    workflow_run_id: str | None = None
    payload: RunOutcomeView | None = None
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


# --- assignment --------------------------------------------------------------------------------


def unit_position(salt: str, unit: str) -> float:
    """Where the unit falls in [0, 1): the first 8 bytes of BLAKE2b(salt, unit), uniform."""
    digest = hashlib.blake2b(f"{salt}\x1f{unit}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def variant_for(salt: str, split: dict[str, float], unit: str) -> str:
    """Walk the cumulative split in variant-name order until it passes the unit's position.

    Name order, not the order the split was written in, so that every replica agrees.
    """
    position = unit_position(salt, unit)
    names = sorted(split)
    cumulative = 0.0
    for name in names:
        cumulative += split[name]
        if position < cumulative:
            return name
    # Rounding can leave the sum a hair under 1: the last variant takes that sliver.
    return names[-1]
