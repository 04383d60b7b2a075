"""HTTP surface of the runner: thin handlers over the catalog and the run manager."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated

import msgspec
from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.params import Body, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from libs.common.kit import problem_responses
from libs.common.kit.parameters import constrained
from libs.common.kit.streaming import closes_when_sent
from libs.common.schemas.workflows import (
    ResumeRequest,
    RunId,
    RunList,
    RunRequest,
    RunStatus,
    RunStatusName,
    WorkflowId,
    WorkflowInfo,
    WorkflowList,
)
from services.langgraph_runner.catalog import Catalog
from services.langgraph_runner.run_watch import is_settled
from services.langgraph_runner.runs import RunManager
from services.langgraph_runner.store import RunRecord

_encode = msgspec.json.Encoder().encode

WorkflowIdParam = Annotated[WorkflowId, constrained(WorkflowId, "A workflow id.")]
RunIdParam = Annotated[RunId, constrained(RunId, "A run id.")]
Wait = Annotated[
    bool,
    Parameter(
        description="Answer when the run has settled (success, error, interrupted, cancelled), "
        "up to RUNNER_MAX_WAIT_S; otherwise answer 202 at once."
    ),
]


def _answer(record: RunRecord) -> Response[RunStatus]:
    """200 once settled, 202 while the run goes on; ``Location`` names the run either way."""
    run = record.run
    return Response(
        run,
        status_code=200 if is_settled(record) else 202,
        headers={"Location": f"/runs/{run.run_id}"},
    )


class WorkflowController(Controller):
    path = "/workflows"
    tags = ("workflows",)

    @get("/", summary="The catalog: each workflow's input schema, prompts and graph (Mermaid)")
    async def list_workflows(self, catalog: NamedDependency[Catalog]) -> WorkflowList:
        return WorkflowList(workflows=[workflow.info for workflow in catalog])

    @get("/{workflow_id:str}", responses=problem_responses(400, 404), summary="One workflow")
    async def get_workflow(
        self,
        workflow_id: WorkflowIdParam,
        catalog: NamedDependency[Catalog],
    ) -> WorkflowInfo:
        return catalog.get(workflow_id).info

    @post(
        "/{workflow_id:str}/runs",
        responses=problem_responses(400, 401, 404, 409, 413, 503),
        summary="Start a run; with wait=true, answer with its outcome",
    )
    async def start_run(
        self,
        workflow_id: WorkflowIdParam,
        data: Annotated[RunRequest, Body()],
        runs: NamedDependency[RunManager],
        wait: Wait = False,
    ) -> Response[RunStatus]:
        record = await runs.start(
            workflow_id,
            data.input,
            run_id=data.run_id,
            parameters=data.parameters,
            metadata=data.metadata,
        )
        if wait:
            record = await runs.wait(record.run.run_id, runs.max_wait_s)
        return _answer(record)


class RunController(Controller):
    path = "/runs"
    tags = ("runs",)

    @get("/", responses=problem_responses(400), summary="Recent runs, newest first")
    async def list_runs(
        self,
        runs: NamedDependency[RunManager],
        workflow_id: Annotated[
            WorkflowId | None, constrained(WorkflowId, "Only runs of this workflow.")
        ] = None,
        status: Annotated[RunStatusName | None, Parameter(required=False)] = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 50,
    ) -> RunList:
        found = await runs.recent(workflow_id=workflow_id, status=status, limit=limit)
        return RunList(runs=[record.run for record in found])

    @get("/{run_id:str}", responses=problem_responses(400, 404), summary="A run's status")
    async def get_run(self, run_id: RunIdParam, runs: NamedDependency[RunManager]) -> RunStatus:
        return (await runs.get(run_id)).run

    @get(
        "/{run_id:str}/stream",
        media_type="text/event-stream",
        responses=problem_responses(400, 404),
        summary="Server-sent events: the status, each node's update, each status change; the "
        "stream ends when the run settles",
    )
    async def stream_run(
        self, run_id: RunIdParam, runs: NamedDependency[RunManager]
    ) -> ServerSentEvent:
        await runs.get(run_id)  # 404 before the stream starts

        async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
            async with aclosing(runs.updates(run_id)) as updates:
                async for update in updates:
                    yield ServerSentEventMessage(
                        event="status" if update.status is not None else "update",
                        data=_encode(update).decode(),
                    )

        body = events()
        return ServerSentEvent(body, background=closes_when_sent(body))

    @post(
        "/{run_id:str}/resume",
        responses=problem_responses(400, 401, 404, 409, 503),
        summary="Answer an interrupt, or retry a failed run from its last checkpoint",
    )
    async def resume_run(
        self,
        run_id: RunIdParam,
        runs: NamedDependency[RunManager],
        data: Annotated[ResumeRequest | None, Body()] = None,
        wait: Wait = False,
    ) -> Response[RunStatus]:
        request = data or ResumeRequest()
        record = await runs.resume(run_id, request.resume, request.interrupt_id)
        if wait:
            record = await runs.wait(run_id, runs.max_wait_s)
        return _answer(record)

    @post(
        "/{run_id:str}/cancel",
        status_code=200,
        responses=problem_responses(400, 401, 404, 409),
        summary="Cancel a pending, running or interrupted run",
    )
    async def cancel_run(self, run_id: RunIdParam, runs: NamedDependency[RunManager]) -> RunStatus:
        return (await runs.cancel(run_id)).run
