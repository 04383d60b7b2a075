"""How the operators read a PAS service's answer: the JSON body of a 2xx, else the problem
(RFC 9457) as the task's error, failing at once when asking again cannot help."""

from __future__ import annotations

from typing import Any

import httpx
from airflow.sdk.exceptions import AirflowException, AirflowFailException


def json_answer(response: httpx.Response, doing: str) -> dict[str, Any]:
    """The JSON body of a 2xx; a 4xx fails the task (asking again will not help), anything
    else raises a retryable error. Both carry the problem's detail."""
    if response.is_success:
        body: dict[str, Any] = response.json()
        return body
    try:
        problem = response.json()
        detail = problem.get("detail") or problem.get("title") or response.text
        fields = problem.get("errors") or problem.get("invalid_params")
    except ValueError:
        detail, fields = response.text, None
    message = f"{doing}: HTTP {response.status_code}: {detail}" + (f" {fields}" if fields else "")
    if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
        raise AirflowFailException(message)
    raise AirflowException(message)
