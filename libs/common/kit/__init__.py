"""The service kit: one call gives a Litestar app health, metrics, JSON logs and errors."""

from libs.common.kit.auth import WriteTokenMiddleware, open_write
from libs.common.kit.health import HealthCheck, HealthReport, HealthStatus
from libs.common.kit.problems import problem_response, problem_responses
from libs.common.kit.request_context import QUIET_WHEN_OK
from libs.common.kit.service import ServiceSettings, create_service

__all__ = [
    "QUIET_WHEN_OK",
    "HealthCheck",
    "HealthReport",
    "HealthStatus",
    "ServiceSettings",
    "WriteTokenMiddleware",
    "create_service",
    "open_write",
    "problem_response",
    "problem_responses",
]
