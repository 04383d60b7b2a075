"""Talk to the analytics collector: send it events over ``POST /events`` (setups without
Kafka, and quality scores, which only an evaluation makes), and read its reports.

``start`` and ``end`` of a report are ISO 8601 text passed as given, so that a bad one is the
collector's own 400 naming it; the collector's defaults are the 24 hours before now.
"""

from __future__ import annotations

import msgspec

from libs.common.clients.http import ServiceClient, ServiceRefused
from libs.common.errors import PASError
from libs.common.schemas.usage import (
    CostReport,
    EventBatch,
    GroupBy,
    IngestResult,
    WorkflowReport,
)


class AnalyticsError(PASError):
    """The collector could not be reached, failed, or refused the request."""


class AnalyticsRefused(AnalyticsError, ServiceRefused):
    """The collector refused the request (a 4xx: a bad event or window, no token); ``detail``
    says why."""

    service = "analytics"


class AnalyticsUnavailable(AnalyticsError):
    """The collector could not be reached or failed (connect error, timeout, 5xx); retry
    later."""

    status_code = 503


def _window(start: str | None, end: str | None) -> dict[str, str]:
    return ({"from": start} if start else {}) | ({"to": end} if end else {})


class AnalyticsClient(ServiceClient):
    def _unavailable(self, reason: str) -> Exception:
        return AnalyticsUnavailable(reason)

    def _refused(self, status_code: int, detail: str) -> Exception:
        return AnalyticsRefused(status_code, detail)

    async def send_events(self, batch: EventBatch) -> IngestResult:
        """Store the batch (each event once by its key; up to 50,000 of each kind): how many
        were received, newly stored, and already held."""
        response = await self._request("POST", "/events", content=msgspec.json.encode(batch))
        return self._decode(response, IngestResult)

    async def cost_report(
        self, group_by: GroupBy = "model", *, start: str | None = None, end: str | None = None
    ) -> CostReport:
        """Tokens and cost per ``group_by`` over the window."""
        params = {"group_by": group_by} | _window(start, end)
        response = await self._request("GET", "/analytics/costs", params=params)
        return self._decode(response, CostReport)

    async def workflow_report(
        self, *, start: str | None = None, end: str | None = None
    ) -> WorkflowReport:
        """Per workflow over the window: runs, success rate, duration percentiles, cost."""
        response = await self._request("GET", "/analytics/workflows", params=_window(start, end))
        return self._decode(response, WorkflowReport)
