"""How long a 429 or 503 asks callers to wait (``Retry-After``, RFC 9110; OpenAI's
``retry-after-ms``), as the shared client reads it onto its errors."""

from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from libs.common.clients.llm_errors import MAX_RETRY_AFTER_S, retry_after_seconds


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # the finer one wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "86400"}, MAX_RETRY_AFTER_S),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "when it suits us"}, None),
        ({}, None),
    ],
)
def test_a_wait_in_seconds(headers: dict[str, str], wait: float | None) -> None:
    assert retry_after_seconds(headers) == wait


def test_a_wait_until_an_http_date() -> None:
    later = formatdate(time.time() + 20, usegmt=True)
    earlier = formatdate(time.time() - 20, usegmt=True)

    assert 18 <= (retry_after_seconds({"retry-after": later}) or 0) <= 20
    assert retry_after_seconds({"retry-after": earlier}) == 0.0
