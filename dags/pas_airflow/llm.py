"""``PASLLMOperator``: one chat completion through the PAS provider router from an Airflow task.

The router picks the cheapest capable model for a ``capability`` (or serves a named ``model``)
and falls back when one fails. The task returns ``{text, model, provider, usage, cost_usd}``
and pushes ``text``, ``tokens`` (the usage) and ``cost_usd`` as XComs of their own. The cost is
the tokens at the prices of the candidate that answered (``X-PAS-Candidate``, priced in ``GET
/providers``). The call is attributed to the DAG run in PAS's analytics
(``X-PAS-Workflow-Id`` = the DAG id, ``X-PAS-Workflow-Run-Id`` = the run id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import httpx
from airflow.sdk import BaseOperator, Context

from pas_airflow.service_calls import json_answer
from pas_airflow.wire import (
    HEADER_WORKFLOW_ID,
    HEADER_WORKFLOW_RUN_ID,
    ROUTER_PORT,
    bearer,
    check,
    service_url,
)


class PASLLMOperator(BaseOperator):
    """Ask the PAS provider router.

    :param messages: chat messages (``[{"role", "content"}]``) or one user message as a string;
        templated.
    :param capability: route by capability (``"reasoning"``, ``"classification"``...), or
    :param model: ask for a model by name (exactly one of the two).
    :param temperature: / :param max_tokens: passed on when set.
    :param router_url: default ``ROUTER_URL``, else ``http://127.0.0.1:6103``; token from
        ``ROUTER_TOKEN``.
    """

    template_fields: Sequence[str] = ("messages", "capability", "model")
    template_fields_renderers: ClassVar[dict[str, str]] = {"messages": "json"}
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        messages: Sequence[Mapping[str, Any]] | str,
        capability: str | None = None,
        model: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        router_url: str | None = None,
        request_timeout: timedelta = timedelta(minutes=2),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (capability is None) == (model is None):
            raise ValueError(f"{self.task_id}: give exactly one of capability= and model=")
        self.messages = messages
        self.capability = capability
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.router_url = router_url
        self.request_timeout_s = request_timeout.total_seconds()

    def _body(self) -> dict[str, Any]:
        messages = (
            [{"role": "user", "content": self.messages}]
            if isinstance(self.messages, str)
            else [dict(m) for m in self.messages]
        )
        body: dict[str, Any] = {"messages": messages}
        optional = {
            "capability": self.capability,
            "model": self.model,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        check("chat_completion_request", body)
        return body

    def execute(self, context: Context) -> dict[str, Any]:
        body = self._body()
        ti = context["ti"]
        base = self.router_url or service_url("ROUTER_URL", ROUTER_PORT)
        headers = {
            **bearer("ROUTER_TOKEN"),
            HEADER_WORKFLOW_ID: ti.dag_id,
            HEADER_WORKFLOW_RUN_ID: context["run_id"],
        }
        with httpx.Client(base_url=base, headers=headers, timeout=self.request_timeout_s) as client:
            response = client.post("/v1/chat/completions", json=body)
            completion = json_answer(response, f"asking the router at {base}")
            candidate = response.headers.get("X-PAS-Candidate")
            prices = _prices(client, candidate) if candidate else None
        usage = completion["usage"]
        cost = (
            None
            if prices is None
            else (usage["prompt_tokens"] * prices[0] + usage["completion_tokens"] * prices[1])
            / 1000
        )
        answer = {
            "text": completion["choices"][0]["message"]["content"],
            "model": completion["model"],
            "provider": response.headers.get("X-PAS-Provider"),
            "usage": usage,
            "cost_usd": cost,
        }
        ti.xcom_push(key="text", value=answer["text"])
        ti.xcom_push(key="tokens", value=usage)
        ti.xcom_push(key="cost_usd", value=cost)
        self.log.info(
            "%s answered (%s tokens, cost %s USD)",
            answer["model"],
            usage.get("total_tokens"),
            cost,
        )
        return answer


def _prices(client: httpx.Client, candidate_id: str) -> tuple[float, float] | None:
    """The answering candidate's (input, output) price per 1k tokens, from ``GET /providers``."""
    response = client.get("/providers")
    if not response.is_success:
        return None
    for row in response.json().get("candidates", []):
        if row.get("id") == candidate_id:
            return float(row["input_per_1k"]), float(row["output_per_1k"])
    return None
