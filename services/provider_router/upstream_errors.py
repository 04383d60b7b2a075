"""How a candidate's call went wrong, as the dispatcher sorts it: failed (fall back, or retry
it later) or refused (the caller's problem)."""

from __future__ import annotations

from libs.common.errors import PASError


class UpstreamFailed(Exception):
    """The candidate did not answer usably; ``retryable`` if the same call may work later;
    ``retry_after_s``: how long the provider asked to be left alone (a 429's Retry-After)."""

    def __init__(self, reason: str, *, retryable: bool, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class UpstreamRefused(PASError):
    """The candidate refused the request itself (a 4xx other than 429): the caller's problem,
    so it is answered with the same status and no fallback."""

    def __init__(self, candidate: str, status_code: int, body: bytes) -> None:
        super().__init__(f"{candidate} refused the request: {body.decode(errors='replace')[:500]}")
        self.status_code = status_code
