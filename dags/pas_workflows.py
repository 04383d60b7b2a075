"""Airflow DAGs that run PAS workflows on the LangGraph runner through Kafka (spec Milestones
1.6, 2.5 and 3.1): one DAG per entry of ``PAS_WORKFLOW_DAGS``, each ``trigger >> wait``.

- ``trigger`` publishes ``workflow.triggered`` (``event_id`` derived from the task try, so a
  re-sent trigger runs once) and returns the receipt as its XCom;
- ``wait`` reads ``workflow-results`` for the matching ``workflow.completed`` and returns its
  payload; ``workflow.failed`` fails the task without retries (the run's error is final; clear
  both tasks to run it again), a timeout is retried with exponential backoff (the run may still
  be going).

Needs Airflow 2.8+ and ``aiokafka``; ``pas_trigger.py`` sits next to this file (Airflow puts the
DAGs folder on ``sys.path``). ``KAFKA_BOOTSTRAP_SERVERS`` names the brokers.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException
from pas_trigger import (
    KafkaTarget,
    WorkflowFailed,
    build_trigger,
    event_id_for,
    trigger_workflow,
    wait_for_workflow,
)

logger = logging.getLogger("pas.dags")

# Dynamic DAGs from configuration: add an entry to schedule another workflow.
PAS_WORKFLOW_DAGS = [
    {
        "dag_id": "pas_document_analysis",
        "workflow_id": "document_analysis",
        "schedule": "0 6 * * 1-5",
        "timeout_s": 600,
        "payload": {
            "title": "Overnight research digest",
            "doc_type": "analyst_note",
            "content": "Equity futures point higher after the central bank held rates steady "
            "and signalled patience; Treasury yields eased and the dollar slipped.",
        },
    },
    {
        "dag_id": "pas_market_brief",
        "workflow_id": "supervisor",
        "schedule": "30 6 * * 1-5",
        "timeout_s": 900,
        "payload": {
            "question": "Which of our large-cap tech names carries the most risk this month?",
            "tickers": ["AAPL", "MSFT", "NVDA"],
        },
    },
    {
        "dag_id": "pas_pre_trade_check",
        "workflow_id": "network",
        "schedule": None,
        "timeout_s": 3600,
        "payload": {"ticker": "JPM", "side": "buy", "quantity": 20000, "desk": "financials"},
    },
]


def notify_failure(context: dict[str, Any]) -> None:
    """The spec's error notification: one structured log line an alert rule can match."""
    task_instance = context["task_instance"]
    logger.error(
        "PAS workflow task failed: dag=%s task=%s run=%s try=%s error=%s",
        task_instance.dag_id,
        task_instance.task_id,
        context.get("run_id"),
        task_instance.try_number,
        context.get("exception"),
    )


DEFAULT_ARGS = {
    "owner": "pas",
    "retries": 3,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "on_failure_callback": notify_failure,
}


def workflow_dag(config: dict[str, Any]) -> Any:
    workflow_id: str = config["workflow_id"]
    timeout_s: float = config["timeout_s"]

    @dag(
        dag_id=config["dag_id"],
        schedule=config["schedule"],
        start_date=datetime(2025, 1, 1),
        catchup=False,
        default_args=DEFAULT_ARGS,
        tags=["pas", "langgraph", workflow_id],
        params={"payload": config["payload"]},
        doc_md=f"Runs the PAS workflow `{workflow_id}` through Kafka and waits for its result.",
    )
    def pipeline() -> None:
        @task
        def trigger(**context: Any) -> dict[str, Any]:
            ti = context["ti"]
            event = build_trigger(
                workflow_id,
                context["params"]["payload"],
                workflow_run_id=f"{ti.dag_id}:{context['run_id']}",
                event_id=event_id_for(ti.dag_id, context["run_id"], ti.task_id, ti.try_number),
                metadata={"dag_id": ti.dag_id, "task_id": ti.task_id, "try": ti.try_number},
            )
            return trigger_workflow(KafkaTarget.from_env(), event)

        @task(execution_timeout=timedelta(seconds=timeout_s + 60))
        def wait(receipt: dict[str, Any]) -> dict[str, Any]:
            try:
                result = wait_for_workflow(KafkaTarget.from_env(), receipt, timeout_s)
            except WorkflowFailed as failed:
                raise AirflowFailException(str(failed)) from failed
            payload: dict[str, Any] = result["payload"]
            return payload

        wait(trigger())

    return pipeline()


for _config in PAS_WORKFLOW_DAGS:
    globals()[_config["dag_id"]] = workflow_dag(_config)
