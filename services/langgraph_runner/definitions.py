"""Where a run's parameters (model, generation settings, prompts) come from.

The seam for the version manager: a ``DefinitionSource`` that asks it for the workflow's
``champion`` (or an experiment's variant) can replace :class:`RequestedParameters` without the
runner changing; the version it returns is recorded in the run and in its result event.
"""

from __future__ import annotations

from typing import Protocol

from libs.common.schemas.workflows import WorkflowParameters


class DefinitionSource(Protocol):
    async def parameters_for(
        self, workflow_id: str, requested: WorkflowParameters | None, unit: str | None
    ) -> WorkflowParameters:
        """The parameters a run of ``workflow_id`` uses; ``unit`` (the run's
        ``workflow_run_id`` or run id) keeps an experiment's assignment sticky."""
        ...


class RequestedParameters:
    """The default: what the request asked for, else the workflow's built-in defaults."""

    async def parameters_for(
        self, workflow_id: str, requested: WorkflowParameters | None, unit: str | None
    ) -> WorkflowParameters:
        return requested or WorkflowParameters()
