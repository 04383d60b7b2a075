"""One exception hierarchy for PAS: every error says what went wrong and what to do."""

from __future__ import annotations


class PASError(Exception):
    """Base class of every error PAS raises on purpose.

    ``status_code`` is what a PAS service answers when the error escapes a handler, with
    ``headers`` (a 429's ``Retry-After``, say).
    """

    status_code: int = 500
    headers: dict[str, str] | None = None


class SettingsError(PASError):
    """A configuration value from the environment is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class RegistryError(PASError):
    """The registry answered, but refused the request (a 4xx)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class AgentNotFound(RegistryError):
    """The agent is not (or no longer) in the registry's catalog."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(404, f"agent {agent_id!r} is not registered")
        self.agent_id = agent_id


class RegistryUnavailable(PASError):
    """The registry could not be reached or failed (connect error, timeout, 5xx); retry later."""

    status_code = 503


class InvalidRequest(PASError):
    """The request is well-formed but cannot be served as asked (too long, unsupported)."""

    status_code = 400


class BackendUnavailable(PASError):
    """The model backend is down or refused the request; another may answer."""

    status_code = 503


class BackendTimeout(PASError):
    """The model backend did not answer within the configured timeout."""

    status_code = 504
