"""How a call to an OpenAI-compatible chat server fails: one taxonomy for every PAS caller.

Every failure is one of three kinds, each a :class:`PASError` a service may answer with:

- :class:`LLMTransientError` (503): another attempt may work: a timeout
  (:class:`LLMTimeout`, 504), nothing listening (:class:`LLMUnreachable`), a dropped
  connection, a 429 or a 5xx, an error reported inside a stream.
- :class:`LLMRefused` (502): the server refused this request (a 4xx other than 429, or a
  redirect, which is not followed); retrying it unchanged will not help.
- :class:`LLMUnusableAnswer` (502): a 2xx whose body is not a chat completion (not JSON, the
  wrong shape, no choices), or a stream event that is not a chunk.

Status and body of an HTTP failure ride on the error (``status``, ``body``), and how long the
server asked to be left alone (``retry_after_s``, from a 429's or a 503's ``Retry-After``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

import aiohttp

from libs.common.errors import PASError
from libs.common.text_parts import says_context_overflow


class LLMError(PASError):
    """An OpenAI-compatible call that did not give a usable answer."""

    status_code = 502

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        """The server's HTTP status, when it answered with one."""
        self.body = body
        """The server's answer body, when it answered with one."""
        self.retry_after_s = retry_after_s
        """How long the server asked callers to wait before the next request, if it said."""


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


MAX_RETRY_AFTER_S = 3600.0
"""A longer wait asked is taken as this long: a server's clock or typo should not park a
caller for a day."""


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: OpenAI's ``retry-after-ms``, else ``Retry-After`` in
    seconds or as an HTTP date (RFC 9110); None when it asks none or says it unreadably."""
    wait: float | None = None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        wait = _number(milliseconds)
        wait = None if wait is None else wait / 1000
    said = headers.get("retry-after")
    if wait is None and said is not None:
        wait = _number(said)
        if wait is None:
            try:
                wait = parsedate_to_datetime(said).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                return None
    return None if wait is None else min(max(wait, 0.0), MAX_RETRY_AFTER_S)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def status_failure(
    status: int, body: bytes, where: str, *, retry_after_s: float | None = None
) -> LLMError:
    """The error for a non-2xx answer (``retry_after_s``: what its ``Retry-After`` asked)."""
    text = body.decode(errors="replace")[:500]
    if status == 429 or status >= 500:
        return LLMTransientError(
            f"{where} answered {status}: {text}",
            status=status,
            body=body,
            retry_after_s=retry_after_s,
        )
    return LLMRefused(f"{where} refused the request ({status}): {text}", status=status, body=body)


def refused_as_too_long(exc: LLMRefused) -> bool:
    """Whether the server refused the request as longer than the model's context (its message
    or its body says so): the text is to be read in parts (``libs/common/text_parts.py``)."""
    return says_context_overflow(f"{exc} {exc.body.decode(errors='replace')}")
