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
from services.langgraph_runner.errors import VersionUnusable

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
    """The version's parameters as a run takes them, checked as a request's are: a struct
    built unchecked was stored, then refused by every read of the runs table (a 500 for each
    list that held the run, and the outbox stuck on it)."""
    definition = plan.definition
    generation = definition.parameters
    max_tokens = generation.max_tokens
    if max_tokens is not None:
        max_tokens = min(max(max_tokens, _MIN_TOKENS), _MAX_TOKENS)
    asked = {
        "version": str(plan.version),
        "model": definition.model,
        "temperature": generation.temperature,
        "max_tokens": max_tokens,
        "prompts": dict(definition.prompts),
    }
    try:
        return msgspec.convert(asked, WorkflowParameters)
    except msgspec.ValidationError as exc:
        raise VersionUnusable(plan.workflow_id, plan.version, str(exc)) from exc
