"""Talk to the version manager: workflow definitions by alias or version, experiment
assignments and outcomes.

The LangGraph runner, with ``VERSIONING_URL`` set, calls :meth:`VersioningClient.plan_run`
before a run of workflow X (the ``champion`` definition, or the version X's running experiment
assigns to the run's unit), runs it, and puts :meth:`RunPlan.event_metadata` in the run's
metadata. When the run ends, with Kafka, its ``workflow.completed`` / ``workflow.failed`` event
carries that metadata on ``workflow-results``, where the version manager reads the
experiment's outcome; without Kafka, the runner calls :meth:`VersioningClient.record_outcome`
instead, with the run's ``workflow_run_id`` (the run id when started over REST) as
``outcome_id``: the key the version manager gives the Kafka outcome, so a run counts once
whichever way it arrived.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec
import stamina

from libs.common.clients.http import ServiceClient, ServiceRefused
from libs.common.errors import PASError
from libs.common.schemas.empty_stops import reader_dropping_empty_stops
from libs.common.schemas.versioning import (
    CHAMPION,
    METADATA_EXPERIMENT_ID,
    METADATA_UNIT,
    METADATA_VARIANT,
    METADATA_WORKFLOW_VERSION,
    Assignment,
    AssignRequest,
    Experiment,
    ExperimentList,
    OutcomeReceipt,
    OutcomeRequest,
    VersionHistory,
    WorkflowDefinition,
    WorkflowVersion,
)

_read_version = reader_dropping_empty_stops(WorkflowVersion, "definition", "parameters")


class VersioningError(ServiceRefused):
    """The version manager refused the request (a 4xx); ``detail`` says why."""

    service = "the version manager"


class VersioningNotFound(VersioningError):
    """No such workflow, version, alias or experiment."""


class VersioningUnavailable(PASError):
    """The version manager could not be reached or failed (connect error, timeout, 5xx)."""

    status_code = 503


class RunPlan(msgspec.Struct, frozen=True, kw_only=True):
    """What one run executes: a version's definition, and the experiment that chose it."""

    workflow_id: str
    version: int
    definition: WorkflowDefinition
    assignment: Assignment | None = None

    def event_metadata(self) -> dict[str, Any]:
        """Fields for the run's ``workflow-results`` event ``metadata``: the version that
        ran and, in an experiment, what makes the event an outcome of it."""
        metadata: dict[str, Any] = {METADATA_WORKFLOW_VERSION: self.version}
        if self.assignment is not None:
            metadata[METADATA_EXPERIMENT_ID] = self.assignment.experiment_id
            metadata[METADATA_VARIANT] = self.assignment.variant
            metadata[METADATA_UNIT] = self.assignment.unit
        return metadata


class VersioningClient(ServiceClient):
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout_s: float = 5.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token=token, timeout_s=timeout_s, transport=transport)
        self._attempts = attempts

    def _unavailable(self, reason: str) -> Exception:
        return VersioningUnavailable(reason)

    def _refused(self, status_code: int, detail: str) -> Exception:
        if status_code == 404:
            return VersioningNotFound(404, detail)
        return VersioningError(status_code, detail)

    # -- workflows ----------------------------------------------------------------------------

    async def get_definition(self, workflow_id: str, alias: str = CHAMPION) -> WorkflowVersion:
        """The version ``alias`` points at (``latest``: the newest one)."""
        response = await self._send("GET", f"/workflows/{workflow_id}", params={"alias": alias})
        return self._decode_version(response)

    async def get_version(self, workflow_id: str, version: int) -> WorkflowVersion:
        response = await self._send("GET", f"/workflows/{workflow_id}/versions/{version}")
        return self._decode_version(response)

    async def history(self, workflow_id: str) -> VersionHistory:
        response = await self._send("GET", f"/workflows/{workflow_id}/versions")
        return self._decode(response, VersionHistory)

    # -- experiments --------------------------------------------------------------------------

    async def running_experiment(self, workflow_id: str) -> Experiment | None:
        """The workflow's running experiment (there is at most one), if any."""
        response = await self._send(
            "GET", "/experiments", params={"workflow_id": workflow_id, "status": "running"}
        )
        found = self._decode(response, ExperimentList).experiments
        return found[0] if found else None

    async def assign(self, experiment_id: str, unit: str) -> Assignment:
        """The unit's variant and version; the same unit always gets the same answer."""
        response = await self._send(
            "POST",
            f"/experiments/{experiment_id}/assign",
            content=msgspec.json.encode(AssignRequest(unit=unit)),
        )
        return self._decode(response, Assignment)

    async def record_outcome(
        self,
        experiment_id: str,
        *,
        unit: str,
        success: bool,
        latency_ms: float,
        cost: float = 0.0,
        score: float | None = None,
        variant: str | None = None,
        outcome_id: str | None = None,
    ) -> OutcomeReceipt:
        """Record one run's outcome. With ``outcome_id`` (the run id) the call is retried on
        failure and counted once however often it arrives; without, it is sent once."""
        outcome = OutcomeRequest(
            unit=unit,
            variant=variant,
            success=success,
            latency_ms=latency_ms,
            cost=cost,
            score=score,
            outcome_id=outcome_id,
        )
        response = await self._send(
            "POST",
            f"/experiments/{experiment_id}/outcomes",
            content=msgspec.json.encode(outcome),
            retry=outcome_id is not None,
        )
        return self._decode(response, OutcomeReceipt)

    async def plan_run(self, workflow_id: str, unit: str | None = None) -> RunPlan:
        """What a run of ``workflow_id`` for ``unit`` executes: the version the workflow's
        running experiment assigns to the unit, else the ``champion``."""
        if unit is not None:
            experiment = await self.running_experiment(workflow_id)
            if experiment is not None:
                try:
                    assignment = await self.assign(experiment.id, unit)
                except VersioningError as exc:
                    if exc.status_code != 409:  # 409: stopped since we looked
                        raise
                else:
                    chosen = await self.get_version(workflow_id, assignment.version)
                    return RunPlan(
                        workflow_id=workflow_id,
                        version=chosen.version,
                        definition=chosen.definition,
                        assignment=assignment,
                    )
        champion = await self.get_definition(workflow_id)
        return RunPlan(
            workflow_id=workflow_id, version=champion.version, definition=champion.definition
        )

    # -- transport ----------------------------------------------------------------------------

    def _decode_version(self, response: httpx.Response) -> WorkflowVersion:
        """The version ``response`` holds. One an older version manager serves with an empty
        stop sequence (taken until 2026-12-07) is read without it, as this release's version
        manager reads it from git, rather than refused as unreadable (every run a 503)."""
        return self._decode(response, WorkflowVersion, read=_read_version)

    async def _send(
        self, method: str, path: str, *, retry: bool = True, **kwargs: Any
    ) -> httpx.Response:
        if not retry:
            return await self._request(method, path, **kwargs)
        async for attempt in stamina.retry_context(
            on=VersioningUnavailable, attempts=self._attempts, wait_initial=0.1, wait_max=2.0
        ):
            with attempt:
                return await self._request(method, path, **kwargs)
        raise AssertionError("unreachable: stamina re-raises the last failure")
