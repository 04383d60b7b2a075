"""The one error body every PAS service returns for a 4xx or 5xx (RFC 9457 problem details)."""

from __future__ import annotations

import msgspec

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, kw_only=True):
    """One invalid input: where it was, and what was wrong with it."""

    field: str
    message: str
    source: str | None = None


class ProblemDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] = msgspec.field(default_factory=list)
