"""Where a run's parameters (model, generation settings, prompts) come from.

By default, from the request (else the workflow's built-in defaults). With ``VERSIONING_URL``
set, from the version manager: the workflow's ``champion`` version, or the version its running
experiment assigns to the run's unit; the version (and the experiment's fields) are recorded in
the run's metadata, so they travel in its ``workflow.completed``/``workflow.failed`` event.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec
import structlog

from libs.common.clients.versioning import RunPlan, VersioningClient, VersioningNotFound
from libs.common.schemas.workflows import WorkflowParameters
from services.langgraph_runner.errors import UnsupportedParameters, VersionUnusable

logger = structlog.get_logger("pas.runner")

# The runner's bounds on one LLM call (WorkflowParameters.max_tokens).
_MIN_TOKENS, _MAX_TOKENS = 16, 8192


class ResolvedDefinition(msgspec.Struct, frozen=True, kw_only=True):
    parameters: WorkflowParameters
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    """Recorded in the run's metadata (and so in its result event)."""


class DefinitionSource(Protocol):
    async def resolve(
        self, workflow_id: str, requested: WorkflowParameters | None, unit: str
    ) -> ResolvedDefinition:
        """What a run of ``workflow_id`` uses; ``unit`` keeps an experiment's assignment
        sticky (the same unit always gets the same variant)."""
        ...


class RequestedParameters:
    """The default: what the request asked for, else the workflow's built-in defaults."""

    async def resolve(
        self, workflow_id: str, requested: WorkflowParameters | None, unit: str
    ) -> ResolvedDefinition:
        return ResolvedDefinition(parameters=requested or WorkflowParameters())


class VersionedDefinitions:
    """Definitions from the version manager. Parameters given in a request still win (an
    operator's explicit override); a workflow with no versions yet runs on its defaults."""

    def __init__(self, client: VersioningClient) -> None:
        self._client = client

    async def resolve(
        self, workflow_id: str, requested: WorkflowParameters | None, unit: str
    ) -> ResolvedDefinition:
        if requested is not None:
            return ResolvedDefinition(parameters=requested)
        try:
            plan = await self._client.plan_run(workflow_id, unit)
        except VersioningNotFound:
            logger.info("no versions of the workflow; built-in defaults", workflow_id=workflow_id)
            return ResolvedDefinition(parameters=WorkflowParameters())
        return ResolvedDefinition(parameters=parameters_of(plan), metadata=plan.event_metadata())


def parameters_of(plan: RunPlan) -> WorkflowParameters:
    """The version's parameters as a run takes them, every one the LLM calls can apply (the
    run records them as what it ran with), checked as a request's are: a struct built
    unchecked was stored, then refused by every read of the runs table (a 500 for each list
    that held the run, and the outbox stuck on it)."""
    definition = plan.definition
    generation = definition.parameters
    max_tokens = generation.max_tokens
    if max_tokens is not None:
        max_tokens = min(max(max_tokens, _MIN_TOKENS), _MAX_TOKENS)
    asked = {
        "version": str(plan.version),
        "model": definition.model,
        # The definition's rule: its capability is asked only when it names no model.
        "capability": definition.capability if definition.model is None else None,
        "temperature": generation.temperature,
        "top_p": generation.top_p,
        "max_tokens": max_tokens,
        "seed": generation.seed,
        "stop": list(generation.stop),
        "timeout_s": generation.timeout_s,
        "prompts": dict(definition.prompts),
    }
    try:
        return msgspec.convert(asked, WorkflowParameters)
    except msgspec.ValidationError as exc:
        raise VersionUnusable(plan.workflow_id, plan.version, str(exc)) from exc


def refuse_inapplicable(
    workflow_id: str, parameters: WorkflowParameters, problem: str | None, *, requested: bool
) -> None:
    """Refuse a run whose parameters the runner's LLM backend cannot apply (``problem`` says
    why; ``None``: it can): the request's fault (400) when it gave them, else the version's
    (502). Run anyway, its record would claim parameters, and a version, that did not run."""
    if problem is None:
        return
    if requested or parameters.version is None:
        raise UnsupportedParameters(f"parameters of {workflow_id!r}: {problem}")
    raise VersionUnusable(workflow_id, parameters.version, problem)
