"""Talk to the LangGraph runner: start a run of a workflow, and read where a run is.

A start answers 202 with the run still going, or 200 once it has settled; with ``wait_s`` the
runner is asked (``wait=true``) to hold the request until the run settles, which it does up to
its own limit (``RUNNER_MAX_WAIT_S``) before answering 202 anyway: poll
:meth:`RunnerClient.get_run` from there.
"""

from __future__ import annotations

import httpx
import msgspec

from libs.common.clients.http import ServiceClient, ServiceRefused
from libs.common.errors import PASError
from libs.common.schemas.empty_stops import reader_dropping_empty_stops
from libs.common.schemas.workflows import RunRequest, RunStatus

WAIT_MARGIN_S = 10.0
"""Read time allowed beyond ``wait_s``: the runner answers after its wait, not at its end."""


_read_run = reader_dropping_empty_stops(RunStatus, "parameters")


class RunnerError(PASError):
    """The runner could not be reached, failed, or refused the request."""


class RunnerRefused(RunnerError, ServiceRefused):
    """The runner refused the request (a 4xx: unknown workflow, taken run id, bad input, no
    token); ``detail`` says why."""

    service = "the runner"


class RunnerUnavailable(RunnerError):
    """The runner could not be reached or failed (connect error, timeout, 5xx); retry later."""

    status_code = 503


class RunnerClient(ServiceClient):
    def _unavailable(self, reason: str) -> Exception:
        return RunnerUnavailable(reason)

    def _refused(self, status_code: int, detail: str) -> Exception:
        return RunnerRefused(status_code, detail)

    async def start_run(
        self, workflow_id: str, request: RunRequest, *, wait_s: float | None = None
    ) -> RunStatus:
        """Start a run of ``workflow_id``. With ``wait_s``, ask the runner to answer once the run
        settles and give it up to ``wait_s`` (plus a margin) to do so; the run may still be
        going when the runner's own limit comes first."""
        params: dict[str, str] = {}
        timeout: httpx.Timeout | None = None
        if wait_s is not None:
            params = {"wait": "true"}
            timeout = httpx.Timeout(self._http.timeout.connect, read=wait_s + WAIT_MARGIN_S)
        response = await self._request(
            "POST",
            f"/workflows/{workflow_id}/runs",
            content=msgspec.json.encode(request),
            params=params,
            request_timeout=timeout,
        )
        return self._decode_run(response)

    async def get_run(self, run_id: str) -> RunStatus:
        response = await self._request("GET", f"/runs/{run_id}")
        return self._decode_run(response)

    def _decode_run(self, response: httpx.Response) -> RunStatus:
        """The run ``response`` holds. One an older runner serves with an empty stop sequence in
        its parameters (taken until 2026-12-07, and kept in its record) is read without it, as
        this release's runner reads its record (``empty_stops.py``), rather than refused as
        unreadable."""
        return self._decode(response, RunStatus, read=_read_run)
