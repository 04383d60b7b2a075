"""The one error body every PAS service returns for a 4xx or 5xx (RFC 9457 problem details)."""

from __future__ import annotations

import msgspec

PROBLEM_MEDIA_TYPE = "application/problem+json"


class FieldError(msgspec.Struct, kw_only=True):
    """One invalid input: where it was, and what was wrong with it."""

    field: str
    message: str
    source: str | None = None


class ClientError(msgspec.Struct, kw_only=True):
    """A failure as OpenAI's API words it (``{"error": {...}}``), which its clients (and
    Anthropic's, with the same ``message`` and ``type``) read their exception's text from."""

    message: str
    type: str
    """``invalid_request_error``, ``authentication_error``, ``permission_error``,
    ``rate_limit_error`` or ``server_error``."""
    param: str | None = None
    """The request field at fault, where one is."""
    code: str | None = None


class ProblemDetail(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] = msgspec.field(default_factory=list)
    error: ClientError | str | None = None
    """On an endpoint that speaks another API (OpenAI's, Ollama's), the failure as that API's
    clients read it, beside the problem (an extension member, as RFC 9457 allows):
    :class:`ClientError` for OpenAI's, the detail as text for Ollama's ``{"error": "..."}``.
    Without it those clients show a bare status (the ``openai`` package: "Error code: 400")."""
