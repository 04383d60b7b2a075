"""How a candidate's call went wrong, as the dispatcher sorts it: failed (fall back, or retry
it later; misconfigured, a failure that is the provider's entry's own) or refused (the
caller's problem)."""

from __future__ import annotations

from libs.common.errors import PASError


class UpstreamFailed(Exception):
    """The candidate did not answer usably; ``retryable`` if the same call may work later;
    ``retry_after_s``: how long the provider asked to be left alone (a 429's Retry-After)."""

    def __init__(self, reason: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class UpstreamMisconfigured(UpstreamFailed):
    """The candidate refused the router, not the request: a key revoked (401), forbidden
    (403), a model retired or a wrong address (404), a redirect (an ``http://`` address of an
    ``https`` API). Its entry needs fixing; asking it again will not help, another candidate
    may serve."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)


CALLERS_FAULT_STATUSES = frozenset({400, 413, 422})
"""The refusals that are the request's own fault (malformed, too large, not processable):
passed on to the caller, since every candidate would refuse it alike."""


class UpstreamRefused(PASError):
    """The candidate refused the request itself (a status of :data:`CALLERS_FAULT_STATUSES`):
    the caller's problem, so it is answered with the same status and no fallback."""

    def __init__(self, candidate: str, status_code: int, body: bytes) -> None:
        super().__init__(f"{candidate} refused the request: {body.decode(errors='replace')[:500]}")
        self.status_code = status_code
