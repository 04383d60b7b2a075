"""What the version manager refuses, and why; each error carries its HTTP status."""

from __future__ import annotations

from libs.common.errors import PASError


class WorkflowNotFound(PASError):
    status_code = 404

    def __init__(self, workflow_id: str) -> None:
        super().__init__(
            f"workflow {workflow_id!r} has no versions; create one with "
            f"POST /workflows/{workflow_id}/versions"
        )


class VersionNotFound(PASError):
    status_code = 404

    def __init__(self, workflow_id: str, version: int, latest: int) -> None:
        super().__init__(
            f"workflow {workflow_id!r} has no version {version} (versions are 1 to {latest})"
        )


class AliasNotFound(PASError):
    status_code = 404

    def __init__(self, workflow_id: str, alias: str, known: list[str]) -> None:
        super().__init__(
            f"workflow {workflow_id!r} has no alias {alias!r} (it has: {', '.join(known)}); "
            f"set it with PUT /workflows/{workflow_id}/aliases/{alias}"
        )


class ExperimentNotFound(PASError):
    status_code = 404

    def __init__(self, experiment_id: str) -> None:
        super().__init__(f"experiment {experiment_id!r} does not exist")


class Conflict(PASError):
    """The request is valid but clashes with the current state (409)."""

    status_code = 409


class InvalidInput(PASError):
    """Well-formed input that names something impossible (400)."""

    status_code = 400


class RepositoryWriteFailed(PASError):
    """git refused or failed a write; the repository was left as it was before it."""

    status_code = 500
