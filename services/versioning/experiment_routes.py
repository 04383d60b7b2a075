"""HTTP surface of A/B experiments: thin handlers over the experiment book."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, HttpMethod, Response, get, post, route
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter

from libs.common.kit import open_write, problem_responses
from libs.common.kit.parameters import constrained
from libs.common.schemas.versioning import (
    Assignment,
    AssignRequest,
    Experiment,
    ExperimentDetail,
    ExperimentList,
    ExperimentRequest,
    ExperimentStatus,
    OutcomeBatch,
    OutcomeReceipt,
    OutcomeRequest,
    StopRequest,
    WorkflowId,
)
from services.versioning.experiments import ExperimentBook
from services.versioning.parameters import ExperimentIdParameter
from services.versioning.unknown_fields import name_unknown_fields


class ExperimentController(Controller):
    path = "/experiments"
    tags = ("experiments",)

    @post(
        "/",
        status_code=201,
        before_request=name_unknown_fields(ExperimentRequest),
        responses=problem_responses(400, 401, 409, 413),
        summary="Start an A/B test between versions of one workflow",
    )
    async def create(
        self, data: JSONBody[ExperimentRequest], book: NamedDependency[ExperimentBook]
    ) -> Experiment:
        return await book.create(data)

    @get("/", responses=problem_responses(400), summary="Experiments, newest last")
    async def list_experiments(
        self,
        book: NamedDependency[ExperimentBook],
        workflow_id: Annotated[
            WorkflowId | None, constrained(WorkflowId, "Only this workflow's experiments.")
        ] = None,
        status: Annotated[
            ExperimentStatus | None, Parameter(description="running or stopped.")
        ] = None,
    ) -> ExperimentList:
        return ExperimentList(experiments=book.find(workflow_id=workflow_id, status=status))

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False, status_code=204)
    async def allow_experiments(self) -> Response[None]:
        # Litestar's automatic OPTIONS answer lists only the first handler of a path that has
        # two (GET and POST here), so this path states its methods itself. Handlers register
        # in name order, and this one must come before the others of its path.
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get(
        "/{experiment_id:str}",
        responses=problem_responses(400, 404),
        summary="An experiment with its results: per-variant figures and significance tests",
    )
    async def detail(
        self, experiment_id: ExperimentIdParameter, book: NamedDependency[ExperimentBook]
    ) -> ExperimentDetail:
        return await book.detail(experiment_id)

    @post(
        "/{experiment_id:str}/stop",
        status_code=200,
        responses=problem_responses(400, 401, 404),
        summary="Stop assigning units and recording outcomes",
    )
    async def stop(
        self,
        experiment_id: ExperimentIdParameter,
        book: NamedDependency[ExperimentBook],
        data: JSONBody[StopRequest | None] = None,
    ) -> Experiment:
        return await book.stop(experiment_id, data.reason if data else None)

    @post(
        "/{experiment_id:str}/assign",
        status_code=200,
        opt=open_write("a deterministic variant for a unit (a hash); stores nothing"),
        responses=problem_responses(400, 404, 409),
        summary="The unit's variant and version (sticky: the same unit always gets the same)",
    )
    async def assign(
        self,
        experiment_id: ExperimentIdParameter,
        data: JSONBody[AssignRequest],
        book: NamedDependency[ExperimentBook],
    ) -> Assignment:
        return book.assign(experiment_id, data.unit)

    @post(
        "/{experiment_id:str}/outcomes",
        status_code=200,
        responses=problem_responses(400, 401, 404, 409, 413),
        summary="Record what happened in one run (an object) or many (an array)",
    )
    async def record(
        self,
        experiment_id: ExperimentIdParameter,
        data: JSONBody[OutcomeRequest | OutcomeBatch],
        book: NamedDependency[ExperimentBook],
    ) -> OutcomeReceipt:
        outcomes = data if isinstance(data, list) else [data]
        return await book.record(experiment_id, outcomes)
