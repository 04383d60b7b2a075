"""Push every change to the configured git remote, in the background.

A write never waits for the remote, and never fails because of it: the change is durable in
the local repository first. Requests made while a push runs are coalesced into one more push
(each push sends everything not yet there). A failing remote is retried with backoff, and
shows in ``/health`` and ``pas_versioning_pushes_total{result="failed"}``.

The remote's credentials stay in memory (:class:`RemoteAccess`); what is shown of the remote
and of git's errors passes through the one redactor.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import stamina
import structlog
from git import GitCommandError

from libs.common.redaction import redact_text
from services.versioning.git_remote import RemoteAccess, push
from services.versioning.metrics import VersioningMetrics

logger = structlog.get_logger("pas.versioning.remote")


class RemotePusher:
    def __init__(
        self,
        repo_path: Path,
        branch: str,
        access: RemoteAccess,
        metrics: VersioningMetrics,
        *,
        retry_wait_max_s: float = 60.0,
    ) -> None:
        self._repo_path = repo_path
        self._branch = branch
        self._access = access
        self._remote_label = redact_text(access.url)
        self._metrics = metrics
        self._retry_wait_max_s = retry_wait_max_s
        self._wanted: asyncio.Event | None = None
        self.last_pushed_at: datetime | None = None
        self.last_error: str | None = None

    def request(self) -> None:
        if self._wanted is not None:
            self._wanted.set()

    def status(self) -> dict[str, object]:
        return {
            "remote": self._remote_label,
            "pending": self._wanted is not None and self._wanted.is_set(),
            "last_pushed_at": self.last_pushed_at.isoformat() if self.last_pushed_at else None,
            "last_error": self.last_error,
        }

    async def run_forever(self) -> None:
        self._wanted = wanted = asyncio.Event()
        wanted.set()  # catch up with anything a previous run did not push
        while True:
            await wanted.wait()
            wanted.clear()
            await self._push_until_done()

    async def _push_until_done(self) -> None:
        async for attempt in stamina.retry_context(
            on=GitCommandError,
            attempts=None,
            timeout=None,
            wait_initial=0.5,
            wait_max=self._retry_wait_max_s,
        ):
            with attempt:
                try:
                    await asyncio.to_thread(push, self._repo_path, self._branch, self._access)
                except GitCommandError as exc:
                    self.last_error = redact_text(str(exc.stderr or exc).strip())[:500]
                    self._metrics.pushes.labels("failed").inc()
                    logger.warning(
                        "push to the remote failed; retrying",
                        remote=self._remote_label,
                        attempt=attempt.num,
                        error=self.last_error,
                    )
                    raise
        self.last_error = None
        self.last_pushed_at = datetime.now(UTC)
        self._metrics.pushes.labels("ok").inc()
        logger.info("pushed to the remote", remote=self._remote_label)
