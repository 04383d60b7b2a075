"""What the ``llm-results`` watcher of ``pas_on_llm_result.py`` makes of a Kafka message.

:func:`document_result` is the ``apply_function`` of the Kafka provider's ``AwaitMessageTrigger``
(through ``MessageQueueTrigger``): the triggerer imports it by dotted path and calls it on every
message of the topic. What it returns becomes the trigger event's payload, which Airflow stores
as the asset event's ``extra["payload"]`` and hands to the DAG run's tasks; ``None`` lets the
message pass without an event.

No Airflow import: the triggerer only needs this module on its ``sys.path`` (the DAGs folder,
``start_airflow.sh`` puts it there), and PAS's contract tests read it without Airflow
(``tests/contracts/test_wire_contracts.py``: what the processor writes, this reads).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

# Relative: the triggerer imports this module as pas_airflow.llm_results, PAS's contract tests as
# dags.pas_airflow.llm_results.
from .wire import TOPIC_LLM_RESULTS, WireShapeError, check

logger = logging.getLogger(__name__)

# The Airflow connection (type ``kafka``) the watcher's consumer is built from; start_airflow.sh
# defines it from KAFKA_BOOTSTRAP_SERVERS unless the deployment does.
KAFKA_CONN_ID = "pas_kafka"


class KafkaMessage(Protocol):
    """The part of ``confluent_kafka.Message`` read here."""

    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...


def llm_results_topic(environ: Mapping[str, str] = os.environ) -> str:
    """``$LLM_RESULTS_TOPIC``, else PAS's ``llm-results``."""
    return environ.get("LLM_RESULTS_TOPIC") or TOPIC_LLM_RESULTS


def kafka_conn_id(environ: Mapping[str, str] = os.environ) -> str:
    """``$PAS_KAFKA_CONN_ID``, else :data:`KAFKA_CONN_ID`."""
    return environ.get("PAS_KAFKA_CONN_ID") or KAFKA_CONN_ID


def document_result(message: KafkaMessage) -> dict[str, Any] | None:
    """The event for one ``llm-results`` message: what identifies the result (not its answer,
    which may be long and would be stored with every asset event), or ``None`` for a message
    that is not a ``DocumentResult`` (logged, skipped: raising would stop the watcher, and one
    bad message must not stop the next good one from triggering)."""
    raw = message.value()
    if raw is None:  # a tombstone
        return None
    where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
    try:
        result = json.loads(raw)
        check("document_result", result)
    except (ValueError, WireShapeError, RecursionError) as exc:  # too deep: json gives up
        logger.warning("skipped %s: not a DocumentResult: %s", where, exc)
        return None
    return {
        "doc_id": result["doc_id"],
        "task": result["task"],
        "status": result["status"],
        "model": result["model"],
        "prompt_tokens": result["prompt_tokens"],
        "completion_tokens": result["completion_tokens"],
        "processing_ms": result["processing_ms"],
        "message": where,
    }
