"""How a call to an OpenAI-compatible chat server fails: one taxonomy for every PAS caller.

Every failure is one of three kinds, each a :class:`PASError` a service may answer with:

- :class:`LLMTransientError` (503): another attempt may work: a timeout
  (:class:`LLMTimeout`, 504), nothing listening (:class:`LLMUnreachable`), a dropped
  connection, a 429 or a 5xx, an error reported inside a stream.
- :class:`LLMRefused` (502): the server refused this request (a 4xx other than 429, or a
  redirect, which is not followed); retrying it unchanged will not help.
- :class:`LLMUnusableAnswer` (502): a 2xx whose body is not a chat completion (not JSON, the
  wrong shape, no choices), or a stream event that is not a chunk.

Status and body of an HTTP failure ride on the error (``status``, ``body``).
"""

from __future__ import annotations

import aiohttp

from libs.common.errors import PASError


class LLMError(PASError):
    """An OpenAI-compatible call that did not give a usable answer."""

    status_code = 502

    def __init__(self, message: str, *, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        """The server's HTTP status, when it answered with one."""
        self.body = body
        """The server's answer body, when it answered with one."""


class LLMTransientError(LLMError):
    """Timeout, no connection, a dropped connection, 429 or 5xx: another attempt may work."""

    status_code = 503


class LLMTimeout(LLMTransientError):
    """The server did not connect, answer, or send the next bytes within the timeout."""

    status_code = 504


class LLMUnreachable(LLMTransientError):
    """Nothing answers at the address (refused connection, unknown host): retrying at once
    rarely helps, so a caller with somewhere else to go goes there."""


class LLMRefused(LLMError):
    """The server refused this request (4xx other than 429, or a redirect)."""


class LLMUnusableAnswer(LLMError):
    """The server said yes (2xx) but what came is not a chat completion or chunk."""


TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError)
"""What aiohttp raises when the server cannot be talked to (its timeouts are ``TimeoutError``s)."""


def transport_failure(exc: BaseException, where: str) -> LLMTransientError:
    """Sort a failure to talk to the server at all into the taxonomy."""
    name = type(exc).__name__
    if isinstance(exc, TimeoutError):  # aiohttp's connect and read timeouts are TimeoutErrors
        return LLMTimeout(f"{where} did not answer in time ({name})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return LLMUnreachable(f"{where} is not reachable: {name}: {exc}")
    # Such as a pooled connection the server closed meanwhile: a fresh one may well work.
    return LLMTransientError(f"{where} broke the connection: {name}: {exc}")


def status_failure(status: int, body: bytes, where: str) -> LLMError:
    """The error for a non-2xx answer."""
    text = body.decode(errors="replace")[:500]
    if status == 429 or status >= 500:
        return LLMTransientError(f"{where} answered {status}: {text}", status=status, body=body)
    return LLMRefused(f"{where} refused the request ({status}): {text}", status=status, body=body)
