"""The query parameters the collector's reads share: the time window (``from``, ``to``) and
exact-match filters, each refused with a 400 that names the parameter and what was wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar.exceptions import ValidationException
from litestar.params import QueryParameter

from libs.common.schemas.usage import EARLIEST_TIME, LATEST_TIME, Period
from services.analytics.store import TimeWindow

DEFAULT_WINDOW = timedelta(hours=24)

From = Annotated[
    str | None,
    QueryParameter(
        name="from",
        max_length=64,
        description="Start, inclusive: ISO 8601 such as 2025-01-31T08:00:00Z (no zone means "
        "UTC). Default: 24 hours before `to`.",
    ),
]
To = Annotated[
    str | None,
    QueryParameter(
        max_length=64,
        description="End, exclusive: ISO 8601 (no zone means UTC). Default: now.",
    ),
]


def text_filter(description: str) -> Any:
    """An exact-match text filter. It refuses NUL: PostgreSQL cannot hold it in text (a query
    with one fails there), and no name PAS records has one."""
    return QueryParameter(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00]+$",
        description=f"{description}; 1 to 256 characters, no NUL.",
    )


Filter = Annotated[str | None, text_filter("Exact match")]


def invalid(parameter: str, message: str) -> ValidationException:
    """The 400 refusing the query parameter ``parameter``, saying why."""
    return ValidationException(
        detail=f"{parameter}: {message}",
        extra=[{"key": parameter, "message": message, "source": "query"}],
    )


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_moment(parameter: str, text: str) -> datetime:
    """The time asked, in UTC, brought within the times an event can hold
    (``EARLIEST_TIME`` to ``LATEST_TIME``): none lies outside, and a time at the calendar's
    edge overflows once in UTC or moved by a window."""
    try:
        asked = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            parameter, f"{text!r} is not an ISO 8601 time such as 2025-01-31T08:00:00Z"
        ) from None
    try:
        moment = _utc(asked)
    except OverflowError:  # within a day of year 1 or year 9999's end
        return EARLIEST_TIME if asked.year == 1 else LATEST_TIME
    return min(max(moment, EARLIEST_TIME), LATEST_TIME)


def time_window(start_text: str | None, end_text: str | None) -> TimeWindow:
    """The asked window with its defaults; ``from`` must come before ``to``."""
    end = parse_moment("to", end_text) if end_text is not None else datetime.now(UTC)
    start = parse_moment("from", start_text) if start_text is not None else end - DEFAULT_WINDOW
    if start >= end:
        raise invalid("from", f"must be before to ({start.isoformat()} >= {end.isoformat()})")
    return TimeWindow(start, end)


def period(window: TimeWindow) -> Period:
    """``window`` as a report states it."""
    return Period(start=window.start, end=window.end)
