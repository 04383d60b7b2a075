"""Prompts from the version manager (``libs/common/clients/versioning.py``): one version of a
workflow for every document, or, in an experiment, the version it assigns to each document
(the unit is the ``doc_id``), whose outcomes are then recorded with the answer's score."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from libs.common.clients.versioning import VersioningClient
from libs.common.schemas.documents import Task, processor_workflow_id
from libs.common.schemas.versioning import WorkflowVersion
from libs.evaluation.report import AnswerRow
from libs.evaluation.runner import Prompting


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a question is asked with when no version says otherwise."""

    model: str | None
    max_tokens: int
    workflow_id: str | None
    """``--workflow``; without it answers are scored under ``kafka_llm_processor.<task>``."""


def prompting_of(
    task: Task,
    defaults: Defaults,
    version: WorkflowVersion | None = None,
    *,
    experiment_id: str | None = None,
    variant: str | None = None,
) -> Prompting:
    """The version's ``prompts[<task>]`` (else ``prompts["system"]``) replaces the task's
    instruction; its ``model`` and ``parameters.max_tokens`` apply when set."""
    if version is None:
        return Prompting(
            workflow_id=defaults.workflow_id or processor_workflow_id(task),
            model=defaults.model,
            max_tokens=defaults.max_tokens,
        )
    definition = version.definition
    return Prompting(
        workflow_id=version.workflow_id,
        instruction=definition.prompts.get(task, definition.prompts.get("system")),
        model=definition.model or defaults.model,
        max_tokens=definition.parameters.max_tokens or defaults.max_tokens,
        workflow_version=version.version,
        experiment_id=experiment_id,
        variant=variant,
    )


class VersionChooser:
    """The version each document is asked with: a fixed one (``--version``/``--alias``) or
    an experiment's assignment (``--experiment``); definitions are read once each."""

    def __init__(
        self,
        client: VersioningClient,
        defaults: Defaults,
        *,
        workflow_id: str | None = None,
        version: int | None = None,
        alias: str | None = None,
        experiment_id: str | None = None,
    ) -> None:
        self._client = client
        self._defaults = defaults
        self._workflow_id = workflow_id
        self._version = version
        self._alias = alias
        self._experiment_id = experiment_id
        self._fixed: WorkflowVersion | None = None
        self._versions: dict[tuple[str, int], WorkflowVersion] = {}

    async def prepare(self) -> None:
        """Read the fixed version now, so that a wrong id fails before any question."""
        if self._experiment_id is not None or self._workflow_id is None:
            return
        if self._version is not None:
            self._fixed = await self._client.get_version(self._workflow_id, self._version)
        else:
            self._fixed = await self._client.get_definition(
                self._workflow_id, self._alias or "champion"
            )

    async def prompting(self, doc_id: str, task: Task) -> Prompting:
        if self._experiment_id is None:
            return prompting_of(task, self._defaults, self._fixed)
        assignment = await self._client.assign(self._experiment_id, doc_id)
        key = (assignment.workflow_id, assignment.version)
        if key not in self._versions:
            self._versions[key] = await self._client.get_version(*key)
        return prompting_of(
            task,
            self._defaults,
            self._versions[key],
            experiment_id=assignment.experiment_id,
            variant=assignment.variant,
        )


async def record_outcomes(client: VersioningClient, rows: Sequence[AnswerRow]) -> int:
    """Record each experiment answer as an outcome of its variant: success = usable and
    grounded, the answer's latency and score, ``outcome_id`` its run id (sent again, it
    replaces rather than adds). Returns how many were recorded."""
    recorded = 0
    for row in rows:
        if row.experiment_id is None:
            continue
        await client.record_outcome(
            row.experiment_id,
            unit=row.doc_id,
            variant=row.variant,
            success=row.usable and row.grounded is not False,
            latency_ms=row.latency_ms,
            score=row.score,
            outcome_id=row.run_id,
        )
        recorded += 1
    return recorded
