"""The topics of CONVENTIONS.md, with the partitions PAS creates them with."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from libs.common.constants import (
    TOPIC_ANALYTICS_DLQ,
    TOPIC_FINANCIAL_DOCUMENTS,
    TOPIC_FINANCIAL_DOCUMENTS_DLQ,
    TOPIC_LLM_RESULTS,
    TOPIC_LLM_USAGE,
    TOPIC_VERSIONING_DLQ,
    TOPIC_WORKFLOW_EVENTS,
    TOPIC_WORKFLOW_EVENTS_DLQ,
    TOPIC_WORKFLOW_RESULTS,
)

# Documents and events are keyed by entity; several partitions let several processors share
# the work while each entity stays in order on one partition.
PAS_TOPICS: Mapping[str, int] = {
    TOPIC_FINANCIAL_DOCUMENTS: 6,
    TOPIC_LLM_RESULTS: 6,
    TOPIC_FINANCIAL_DOCUMENTS_DLQ: 1,
    TOPIC_WORKFLOW_EVENTS: 3,
    TOPIC_WORKFLOW_RESULTS: 3,
    TOPIC_WORKFLOW_EVENTS_DLQ: 1,
    TOPIC_LLM_USAGE: 3,
    TOPIC_ANALYTICS_DLQ: 1,
    TOPIC_VERSIONING_DLQ: 1,
}


async def ensure_topics(bootstrap_servers: str, topics: Mapping[str, int] = PAS_TOPICS) -> None:
    """Create the topics that do not exist yet (existing ones are left as they are)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=partitions, replication_factor=1)
            for name, partitions in topics.items()
            if name not in existing
        ]
        # Created meanwhile by another process is what we wanted too.
        if missing:
            with suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()
