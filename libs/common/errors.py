"""One exception hierarchy for PAS: every error says what went wrong and what to do."""

from __future__ import annotations


class PASError(Exception):
    """Base class of every error PAS raises on purpose."""


class SettingsError(PASError):
    """A configuration value from the environment is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class RegistryError(PASError):
    """The registry answered, but refused the request (a 4xx)."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"registry refused the request ({status_code}): {detail}")
        self.status_code = status_code
        self.detail = detail


class AgentNotFound(RegistryError):
    """The agent is not (or no longer) in the registry's catalog."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(404, f"agent {agent_id!r} is not registered")
        self.agent_id = agent_id


class RegistryUnavailable(PASError):
    """The registry could not be reached or failed (connect error, timeout, 5xx); retry later."""
