"""Event-driven scheduling from Kafka (spec Milestone 1.6): ``pas_on_llm_result`` runs when a
document's result lands on ``llm-results``.

The asset ``pas_llm_results`` is watched by an ``AssetWatcher`` whose trigger is the
common-messaging ``MessageQueueTrigger`` on the ``kafka`` scheme (the Kafka provider's
``AwaitMessageTrigger``). It runs in the triggerer, consumes the topic in a consumer group of
the Airflow connection ``pas_kafka`` and turns each ``DocumentResult`` into an asset event
(``pas_airflow.llm_results.document_result``); the scheduler then starts a DAG run, whose task
reads the triggering events. Results that land while a run is being created share that run: the
task handles every event it was given.

``LLM_RESULTS_TOPIC`` (default ``llm-results``) names the topic and ``PAS_KAFKA_CONN_ID``
(default ``pas_kafka``) the connection; ``start_airflow.sh`` defines that connection from
``KAFKA_BOOTSTRAP_SERVERS`` unless ``AIRFLOW_CONN_PAS_KAFKA`` is set (dags/README.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from airflow.providers.common.messaging.triggers.msg_queue import MessageQueueTrigger
from airflow.sdk import DAG, Asset, AssetWatcher, task
from pas_airflow.llm_results import kafka_conn_id, llm_results_topic

logger = logging.getLogger("pas.dags")

LLM_RESULTS = Asset(
    "pas_llm_results",
    watchers=[
        AssetWatcher(
            name="pas_llm_results_watcher",
            trigger=MessageQueueTrigger(
                scheme="kafka",
                topics=[llm_results_topic()],
                kafka_config_id=kafka_conn_id(),
                apply_function="pas_airflow.llm_results.document_result",
                # Only after a message that is not a result: the trigger waits this long before
                # reading the next (it polls without pause otherwise).
                poll_interval=1,
            ),
        )
    ],
)


def results_of(events: Sequence[Any]) -> list[dict[str, Any]]:
    """The results the watcher put in the asset events (``extra["payload"]``); an event from
    elsewhere (a manual asset update through the API) carries none and is left out."""
    return [event.extra["payload"] for event in events if event.extra.get("payload")]


with DAG(
    dag_id="pas_on_llm_result",
    description="Runs when a document's result lands on llm-results",
    schedule=[LLM_RESULTS],
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["pas", "kafka", "llm-results"],
    doc_md=__doc__,
):

    @task
    def record_results(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """Log each result (doc_id, task, status, model, tokens) and return them as XCom, for a
        downstream task to act on."""
        events = triggering_asset_events[LLM_RESULTS] if triggering_asset_events else []
        results = results_of(events)
        for result in results:
            logger.info(
                "LLM result landed: doc_id=%s task=%s status=%s model=%s tokens=%s+%s (%s)",
                result["doc_id"],
                result["task"],
                result["status"],
                result["model"],
                result["prompt_tokens"],
                result["completion_tokens"],
                result["message"],
            )
        return results

    record_results()
