"""Where the ``pas`` command finds PAS: the variables clients of PAS already read.

``<SERVICE>_URL`` is where a client finds a service (``REGISTRY_URL``, ``RUNNER_URL``, ...),
``<SERVICE>_TOKEN`` its token, else ``PAS_TOKEN``; the topics are the ones the services
themselves read, by the same names in the same order (``PROCESSOR_INPUT_TOPIC`` else
``INPUT_TOPIC``, ``RUNNER_EVENTS_TOPIC``, ...), so that one ``.env`` points the services and
the command at the same place.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from libs.common.constants import (
    ANALYTICS_PORT,
    DEFAULT_REGISTRY_URL,
    KAFKA_LLM_PROCESSOR_PORT,
    KAFKA_PORT,
    LANGGRAPH_RUNNER_PORT,
    LLAMA31_8B_PORT,
    PROCESSOR_SPILL_DIR,
    PROVIDER_ROUTER_PORT,
    TINYLLAMA_PORT,
    TLC_CLASSIFIER_PORT,
    TOPIC_ANALYTICS_DLQ,
    TOPIC_FINANCIAL_DOCUMENTS,
    TOPIC_FINANCIAL_DOCUMENTS_DLQ,
    TOPIC_LLM_RESULTS,
    TOPIC_VERSIONING_DLQ,
    TOPIC_WORKFLOW_EVENTS,
    TOPIC_WORKFLOW_EVENTS_DLQ,
    TOPIC_WORKFLOW_RESULTS,
    VERSIONING_PORT,
)
from libs.common.settings import BaseSettings

Url = Annotated[str, msgspec.Meta(pattern=r"^https?://")]


def _local(port: int) -> str:
    return f"http://localhost:{port}"


class CLISettings(BaseSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = ""
    env_aliases: ClassVar = {
        "kafka_bootstrap_servers": ("KAFKA_BROKERS",),
        # The processor's own names first, then the spec's shared ones, as the processor reads
        # them (ProcessorSettings), so that the CLI sends to and reads from its topics.
        "processor_input_topic": ("INPUT_TOPIC",),
        "processor_output_topic": ("OUTPUT_TOPIC",),
        "processor_dlq_topic": ("DLQ_TOPIC",),
        "registry_token": ("PAS_TOKEN",),
        "runner_token": ("PAS_TOKEN",),
        "router_token": ("PAS_TOKEN",),
        "analytics_token": ("PAS_TOKEN",),
    }

    kafka_bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    registry_url: Url = DEFAULT_REGISTRY_URL
    registry_token: str | None = None
    router_url: Url = _local(PROVIDER_ROUTER_PORT)
    router_token: str | None = None
    """For ``pas key list``: every desk key's row is the router's token's to read."""
    llama31_8b_url: Url = _local(LLAMA31_8B_PORT)
    tinyllama_url: Url = _local(TINYLLAMA_PORT)
    tlc_url: Url = _local(TLC_CLASSIFIER_PORT)
    processor_url: Url = _local(KAFKA_LLM_PROCESSOR_PORT)
    runner_url: Url = _local(LANGGRAPH_RUNNER_PORT)
    runner_token: str | None = None
    versioning_url: Url = _local(VERSIONING_PORT)
    analytics_url: Url = _local(ANALYTICS_PORT)
    analytics_token: str | None = None
    processor_input_topic: str = TOPIC_FINANCIAL_DOCUMENTS
    processor_output_topic: str = TOPIC_LLM_RESULTS
    processor_dlq_topic: str = TOPIC_FINANCIAL_DOCUMENTS_DLQ
    processor_spill_dir: str = PROCESSOR_SPILL_DIR
    """Where ``pas spill`` finds the processor's ``spilled.jsonl`` (its ``PROCESSOR_SPILL_DIR``:
    run the command from the processor's working directory, or give the path)."""
    runner_events_topic: str = TOPIC_WORKFLOW_EVENTS
    runner_results_topic: str = TOPIC_WORKFLOW_RESULTS
    runner_dlq_topic: str = TOPIC_WORKFLOW_EVENTS_DLQ
    analytics_dlq_topic: str = TOPIC_ANALYTICS_DLQ
    versioning_dlq_topic: str = TOPIC_VERSIONING_DLQ
    replay_deadline_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 15.0
    """How long ``pas dlq replay`` and ``pas spill replay`` wait for the broker to acknowledge
    each record (retrying what passes) before they name it not sent."""

    def services(self) -> dict[str, str]:
        """Every PAS service by name, at the URL its clients use (``pas status`` asks each)."""
        return {
            "registry": self.registry_url,
            "provider_router": self.router_url,
            "llama31_8b": self.llama31_8b_url,
            "tinyllama": self.tinyllama_url,
            "tlc_classifier": self.tlc_url,
            "kafka_llm_processor": self.processor_url,
            "langgraph_runner": self.runner_url,
            "versioning": self.versioning_url,
            "analytics": self.analytics_url,
        }

    def dead_letter_queues(self) -> dict[str, str]:
        """PAS's DLQs, each with the service that writes it (``pas dlq list`` counts them)."""
        return {
            self.processor_dlq_topic: "kafka_llm_processor",
            self.runner_dlq_topic: "langgraph_runner",
            self.analytics_dlq_topic: "analytics",
            self.versioning_dlq_topic: "versioning",
        }
