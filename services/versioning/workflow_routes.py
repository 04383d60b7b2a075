"""HTTP surface of workflow versions and aliases: thin handlers over the catalog."""

from __future__ import annotations

from litestar import Controller, HttpMethod, Response, get, post, put, route
from litestar.di import NamedDependency
from litestar.params import JSONBody

from libs.common.kit import problem_responses
from libs.common.schemas.versioning import (
    CHAMPION,
    AliasMove,
    CreateVersionRequest,
    MoveAliasRequest,
    RollbackRequest,
    VersionComparison,
    VersionHistory,
    WorkflowList,
    WorkflowVersion,
)
from services.versioning.catalog import VersionCatalog
from services.versioning.parameters import (
    AliasParameter,
    VersionParameter,
    WorkflowIdParameter,
)
from services.versioning.unknown_fields import name_unknown_fields


class WorkflowController(Controller):
    path = "/workflows"
    tags = ("workflows",)

    @get("/", summary="Every workflow with its newest version and aliases")
    async def list_workflows(self, catalog: NamedDependency[VersionCatalog]) -> WorkflowList:
        return WorkflowList(workflows=catalog.summaries())

    @post(
        "/{workflow_id:str}/versions",
        status_code=201,
        before_request=name_unknown_fields(CreateVersionRequest),
        responses=problem_responses(400, 401, 413, 500),
        summary="Save a definition as the workflow's next version (a tagged git commit)",
    )
    async def create_version(
        self,
        workflow_id: WorkflowIdParameter,
        data: JSONBody[CreateVersionRequest],
        catalog: NamedDependency[VersionCatalog],
    ) -> WorkflowVersion:
        return await catalog.create_version(workflow_id, data)

    @get(
        "/{workflow_id:str}/versions",
        responses=problem_responses(400, 404),
        summary="History: every version, newest first, with commit, author, message and aliases",
    )
    async def history(
        self, workflow_id: WorkflowIdParameter, catalog: NamedDependency[VersionCatalog]
    ) -> VersionHistory:
        return catalog.history(workflow_id)

    @route(
        "/{workflow_id:str}/versions",
        http_method=[HttpMethod.OPTIONS],
        include_in_schema=False,
        status_code=204,
    )
    async def allow_versions(self) -> Response[None]:
        # Litestar's automatic OPTIONS answer lists only the first handler of a path that has
        # two (GET and POST here), so this path states its methods itself. Handlers register
        # in name order, and this one must come before the others of its path.
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get(
        "/{workflow_id:str}/versions/{version:int}",
        responses=problem_responses(400, 404),
        summary="One version with its definition",
    )
    async def get_version(
        self,
        workflow_id: WorkflowIdParameter,
        version: VersionParameter,
        catalog: NamedDependency[VersionCatalog],
    ) -> WorkflowVersion:
        return await catalog.version(workflow_id, version)

    @get(
        "/{workflow_id:str}",
        responses=problem_responses(400, 404),
        summary="The version an alias points at (champion unless ?alias= says otherwise)",
    )
    async def resolve(
        self,
        workflow_id: WorkflowIdParameter,
        catalog: NamedDependency[VersionCatalog],
        alias: AliasParameter = CHAMPION,
    ) -> WorkflowVersion:
        return await catalog.resolve(workflow_id, alias)

    @put(
        "/{workflow_id:str}/aliases/{alias:str}",
        before_request=name_unknown_fields(MoveAliasRequest),
        responses=problem_responses(400, 401, 404, 500),
        summary="Point an alias at a version (a git commit of the workflow's alias file)",
    )
    async def move_alias(
        self,
        workflow_id: WorkflowIdParameter,
        alias: AliasParameter,
        data: JSONBody[MoveAliasRequest],
        catalog: NamedDependency[VersionCatalog],
    ) -> AliasMove:
        return await catalog.move_alias(
            workflow_id, alias, data.version, author=data.author, message=data.message
        )

    @get(
        "/{workflow_id:str}/compare",
        responses=problem_responses(400, 404),
        summary="Structural diff (added, removed, modified JSON paths) and git's text diff",
    )
    async def compare(
        self,
        workflow_id: WorkflowIdParameter,
        v1: VersionParameter,
        v2: VersionParameter,
        catalog: NamedDependency[VersionCatalog],
    ) -> VersionComparison:
        return await catalog.compare(workflow_id, v1, v2)

    @post(
        "/{workflow_id:str}/rollback",
        status_code=201,
        before_request=name_unknown_fields(RollbackRequest),
        responses=problem_responses(400, 401, 404, 500),
        summary="Restore a version's content as a new version and make it champion",
    )
    async def rollback(
        self,
        workflow_id: WorkflowIdParameter,
        data: JSONBody[RollbackRequest],
        catalog: NamedDependency[VersionCatalog],
    ) -> WorkflowVersion:
        return await catalog.rollback(workflow_id, data)
