"""Exception handlers turning every failure into one ``application/problem+json`` body."""

from __future__ import annotations

import re
import traceback
from http import HTTPStatus
from typing import Any, Final

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap, Receive, Scope, Send

from libs.common.errors import PASError
from libs.common.kit.request_context import current_request_id
from libs.common.redaction import redact_text
from libs.common.schemas.problems import (
    PROBLEM_MEDIA_TYPE,
    ClientError,
    FieldError,
    ProblemDetail,
)
from libs.common.unreadable_json import NESTED_TOO_DEEP

logger = structlog.get_logger("pas.errors")

_MSGSPEC_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
# A wire type's own check (a ``__post_init__``) names its field first: "timestamp: ...".
_CHECKED_FIELD = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*): (?P<problem>.+)$", re.DOTALL)
# msgspec quotes the pattern a string missed; a long one (an endpoint's) is no help in a reply.
_LONG_PATTERN = re.compile(r"matching regex '(?P<pattern>.{120,})'$", re.DOTALL)

ERROR_DIALECT: Final = "error_dialect"
"""Key of a handler's (or controller's) ``opt``: the API whose clients call it, so that its
problems also carry the error as they read it (:attr:`ProblemDetail.error`)."""
OPENAI_ERRORS: Final = {ERROR_DIALECT: "openai"}
OLLAMA_ERRORS: Final = {ERROR_DIALECT: "ollama"}
_OPENAI_ERROR_TYPES: Final = {
    401: "authentication_error",
    403: "permission_error",
    429: "rate_limit_error",
}


def problem_response(
    status: int,
    detail: str,
    *,
    request: Request[Any, Any, Any] | None = None,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ProblemDetail]:
    """A problem-details response; any handler may return one directly. The detail passes
    through the one redactor (it may quote an upstream URL or error that carries a secret)."""
    detail = redact_text(detail)
    errors = errors or []
    body = ProblemDetail(
        title=HTTPStatus(status).phrase,
        status=status,
        detail=detail,
        instance=request.url.path if request is not None else None,
        request_id=current_request_id(),
        errors=errors,
        error=_in_dialect(request, status, detail, errors),
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _in_dialect(
    request: Request[Any, Any, Any] | None, status: int, detail: str, errors: list[FieldError]
) -> ClientError | str | None:
    """The error as the clients of the request's endpoint read it, if it speaks another API."""
    # Set once the path is routed: an unknown path's 404 has no handler, and no dialect.
    handler = request.scope.get("route_handler") if request is not None else None
    dialect = handler.opt.get(ERROR_DIALECT) if handler is not None else None
    if dialect == "ollama":
        return detail
    if dialect != "openai":
        return None
    return ClientError(
        message=detail,
        type=_OPENAI_ERROR_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        ),
        param=errors[0].field if errors else None,
        code="rate_limit_exceeded" if status == 429 else None,
    )


async def answer_refused(
    scope: Scope, receive: Receive, send: Send, refused: HTTPException
) -> None:
    """Answer a request that a middleware refuses (a missing token, say) with its problem
    body, there and then. Raised instead, the error would pass the kit's request-id and
    metrics middleware on its way to the app's handler, and go out as their 500."""
    request: Request[Any, Any, Any] = Request(scope, receive)
    response = problem_response(
        refused.status_code, str(refused.detail), request=request, headers=refused.headers
    )
    await response.to_asgi_response(None, request)(scope, receive, send)


def _field_errors(extra: Any) -> list[FieldError]:
    """Litestar reports msgspec's message with the JSON path; split it into field and problem."""
    if not isinstance(extra, list):
        return []
    found: list[FieldError] = []
    for item in extra:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid value"))
        field = str(item.get("key") or "")
        path = ""
        match = _MSGSPEC_PATH.search(message)
        if match:
            path = match["path"]
            message = message[: match.start()]
        message = _LONG_PATTERN.sub("matching the field's pattern (in the OpenAPI schema)", message)
        # The object's place: in the message, or as Litestar's key ("data" is the body).
        where = path or ("" if field in ("", "data") else field)
        named = _MISSING_FIELD.match(message) or _CHECKED_FIELD.match(message)
        if named:
            path = f"{where}.{named['name']}" if where else named["name"]
            message = named.groupdict().get("problem") or "field required"
        if path:
            field = path
        found.append(FieldError(field=field or "body", message=message, source=item.get("source")))
    return found


def _caused_by_undecodable_body(exc: BaseException) -> bool:
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, msgspec.DecodeError) and not isinstance(
            cause, msgspec.ValidationError
        ):
            return True
        cause = cause.__cause__
    return False


def _on_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ProblemDetail]:
    errors = _field_errors(exc.extra)
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) if errors else str(exc.detail)
    return problem_response(exc.status_code, detail, request=request, errors=errors)


def _log_failure(request: Request[Any, Any, Any], status: int, detail: str, **context: str) -> None:
    logger.error(
        "request failed",
        method=request.method,
        path=request.url.path,
        status=status,
        detail=detail,
        **context,
    )


def _on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ProblemDetail]:
    detail = str(exc.detail)
    if _caused_by_undecodable_body(exc):
        detail = f"request body is not valid JSON: {exc.detail}"
    elif exc.status_code == 413:
        limit = request.route_handler.resolve_request_max_body_size()
        detail = f"request body is larger than the limit of {limit} bytes"
    if exc.status_code >= 500:
        _log_failure(request, exc.status_code, detail)
    return problem_response(
        exc.status_code,
        detail,
        request=request,
        errors=_field_errors(exc.extra),
        headers=exc.headers,
    )


def _on_pas_error(request: Request[Any, Any, Any], exc: PASError) -> Response[ProblemDetail]:
    if exc.status_code >= 500:
        _log_failure(request, exc.status_code, str(exc), error_type=type(exc).__name__)
    return problem_response(exc.status_code, str(exc), request=request, headers=exc.headers)


def _nested_too_deep_to_read(exc: Exception) -> bool:
    """A body nested deeper than the interpreter's recursion allows fails in Litestar's decoding
    (thousands of ``[``): the request's fault, not the service's."""
    if not isinstance(exc, RecursionError):
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    return any(frame.filename.endswith(_BODY_DECODING) for frame in frames)


_BODY_DECODING = "litestar/serialization/msgspec_hooks.py"


def _on_unexpected_error(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ProblemDetail]:
    if _nested_too_deep_to_read(exc):
        return problem_response(400, f"body: {NESTED_TOO_DEEP}", request=request)
    logger.exception(
        "unhandled error", method=request.method, path=request.url.path, error=repr(exc)
    )
    return problem_response(
        500,
        f"internal error ({type(exc).__name__}); quote request id {current_request_id()} "
        "when reporting it",
        request=request,
    )


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: _on_validation_error,
    HTTPException: _on_http_error,
    PASError: _on_pas_error,
    Exception: _on_unexpected_error,
}


def problem_responses(*status_codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem bodies a handler may answer with."""
    return {
        code: ResponseSpec(
            data_container=ProblemDetail,
            description=HTTPStatus(code).description or HTTPStatus(code).phrase,
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for code in status_codes
    }
