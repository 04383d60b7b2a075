"""What the runner refuses, each with the HTTP status it answers with."""

from __future__ import annotations

from libs.common.errors import PASError, SettingsError


class WorkflowNotFound(PASError):
    status_code = 404

    def __init__(self, workflow_id: str, known: list[str]) -> None:
        super().__init__(f"workflow {workflow_id!r} is not in the catalog; known: {known}")
        self.workflow_id = workflow_id


class RunNotFound(PASError):
    status_code = 404

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} does not exist")
        self.run_id = run_id


class InvalidWorkflowInput(PASError):
    """The input does not fit the workflow's input schema (shown in ``GET /workflows``)."""

    status_code = 400


class VersionUnusable(PASError):
    """The version the version manager chose holds what no run takes (an empty prompt, say):
    the version is to be mended, not the request."""

    status_code = 502

    def __init__(self, workflow_id: str, version: int | str, problem: str) -> None:
        super().__init__(f"version {version} of {workflow_id!r} cannot be run: {problem}")


class UnsupportedParameters(PASError):
    """A request's parameters ask what the runner's LLM backend cannot do (a capability of a
    runner on the Ollama API, say)."""

    status_code = 400


class RunConflict(PASError):
    """The run is not in a state that allows the request (resume a finished run, say)."""

    status_code = 409


class AnswerUnusable(PASError):
    """The model's answer is not the JSON the node asked for (cut short, or malformed), or the
    server's answer cannot be read at all."""

    status_code = 502


class WorkflowLoadError(SettingsError):
    """A configured extra workflow cannot be loaded: the runner does not start (one line on
    stderr naming the variable, like any bad setting)."""

    def __init__(self, problem: str) -> None:
        super().__init__("RUNNER_EXTRA_WORKFLOWS", problem)
