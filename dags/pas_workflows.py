"""Airflow DAGs that run PAS workflows on the LangGraph runner (spec Milestones 1.6, 2.5 and
3.1): one DAG per entry of ``workflows.yaml``, each one
:class:`~pas_airflow.langgraph.LangGraphOperator` task that publishes ``workflow.triggered`` and
defers until the run's ``workflow.completed`` (its output becomes the task's XCom) or
``workflow.failed`` (the task fails without retries: the run's error is final). No result in
time fails the try, retried with exponential backoff as the entry says; each try is a new run.
A task that has failed for good is logged and notified (``pas_airflow.notify``).

Schedules: cron (``CronTriggerTimetable``, UTC), or assets: an entry's ``updates`` are its
task's outlets (updated when the workflow succeeds), and an entry with ``after`` runs each time
those assets have been updated. An entry that does not fit, or a schedule that is not a cron
expression, makes this file an import error naming the entry and the field: no DAG is silently
left out.

Airflow 3 (``airflow.sdk``); ``pas_airflow/`` sits next to this file (Airflow puts the DAGs
folder on ``sys.path``). ``KAFKA_BOOTSTRAP_SERVERS`` names the brokers. A manual run may pass
another payload: ``airflow dags trigger pas_document_analysis -c '{"payload": {...}}'``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, CronTriggerTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid
from pas_airflow import LangGraphOperator, PASFailureNotifier
from pas_airflow.config import ConfigError, WorkflowDAG, load

logger = logging.getLogger("pas.dags")


def notify_failure(context: Any) -> None:
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


def schedule_of(entry: WorkflowDAG, number: int) -> CronTriggerTimetable | list[Asset] | None:
    if entry.after:
        return [Asset(name) for name in entry.after]
    if entry.schedule is None:
        return None
    try:
        timetable = CronTriggerTimetable(entry.schedule, timezone="UTC")
        timetable.validate()
    except (ValueError, AirflowTimetableInvalid) as exc:
        raise ConfigError(
            f"workflows.yaml: entry {number} ({entry.dag_id}): `schedule` {entry.schedule!r} "
            f"is not a cron expression: {exc}"
        ) from exc
    return timetable


def workflow_dag(entry: WorkflowDAG, number: int) -> DAG:
    retries = entry.retries
    notify = entry.notify
    with DAG(
        dag_id=entry.dag_id,
        description=entry.description or None,
        schedule=schedule_of(entry, number),
        start_date=datetime(2025, 1, 1),
        catchup=False,
        default_args={
            "owner": "pas",
            "retries": retries.count,
            "retry_delay": timedelta(seconds=retries.delay_s),
            "retry_exponential_backoff": retries.backoff if retries.backoff > 1 else 0,
            "max_retry_delay": timedelta(seconds=retries.max_delay_s),
            # Once per failed task instance (after its last try).
            "on_failure_callback": [
                notify_failure,
                PASFailureNotifier(
                    slack_webhook_conn_id=notify.slack_conn_id,
                    smtp_conn_id=notify.smtp_conn_id,
                    to=notify.email or None,
                ),
            ],
        },
        tags=["pas", "langgraph", entry.workflow_id, *entry.tags],
        params={"payload": entry.payload},
        render_template_as_native_obj=True,
        doc_md=f"Runs the PAS workflow `{entry.workflow_id}` ({entry.mode}) and returns its "
        "output; over Kafka the task is deferred (no worker slot held) until the result lands. "
        "Configured in `dags/workflows.yaml`.",
    ) as pipeline:
        LangGraphOperator(
            task_id="run_workflow",
            workflow_id=entry.workflow_id,
            input="{{ params.payload }}",
            unit=entry.unit,
            mode=entry.mode,
            timeout=timedelta(seconds=entry.timeout_s),
            outlets=[Asset(name) for name in entry.updates],
        )
    return pipeline


for _number, _entry in enumerate(load(), 1):
    globals()[_entry.dag_id] = workflow_dag(_entry, _number)
