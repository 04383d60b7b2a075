"""The trigger a deferred :class:`~pas_airflow.langgraph.LangGraphOperator` waits on.

It runs in Airflow's triggerer (asyncio, many at once, no worker slot held): it reads
``workflow-results`` for the result with the trigger's ``event_id`` (``pas_trigger.
wait_for_result``: no consumer group, from a little before the trigger was sent, so a result that
landed before the wait started is found) and fires one event: ``completed`` with the result,
``failed`` with the workflow's reason, or ``timeout``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from pas_trigger import KafkaTarget, WorkflowFailed, WorkflowTimeout, wait_for_result


class WorkflowResultTrigger(BaseTrigger):
    def __init__(
        self,
        *,
        receipt: dict[str, Any],
        bootstrap_servers: str,
        results_topic: str,
        timeout_s: float,
    ) -> None:
        super().__init__()
        self.receipt = receipt
        self.bootstrap_servers = bootstrap_servers
        self.results_topic = results_topic
        self.timeout_s = timeout_s

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "receipt": self.receipt,
                "bootstrap_servers": self.bootstrap_servers,
                "results_topic": self.results_topic,
                "timeout_s": self.timeout_s,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        target = KafkaTarget(self.bootstrap_servers, results_topic=self.results_topic)
        self.log.info(
            "waiting on %s for the result of event %s (workflow %s, run %s)",
            self.results_topic,
            self.receipt["event_id"],
            self.receipt["workflow_id"],
            self.receipt["workflow_run_id"],
        )
        try:
            result = await wait_for_result(target, self.receipt, self.timeout_s)
        except WorkflowFailed as failed:
            yield TriggerEvent({"status": "failed", "reason": str(failed), "result": failed.result})
            return
        except WorkflowTimeout as timeout:
            yield TriggerEvent({"status": "timeout", "reason": str(timeout)})
            return
        yield TriggerEvent({"status": "completed", "result": result})
