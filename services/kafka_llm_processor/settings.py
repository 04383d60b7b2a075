"""The processor's settings: the spec's variables (``KAFKA_BROKERS``, ``INPUT_TOPIC``, ...) and
``PROCESSOR_*`` for the rest."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import msgspec

from libs.common.constants import (
    KAFKA_LLM_PROCESSOR_PORT,
    KAFKA_PORT,
    LLAMA31_8B_PORT,
    PROCESSOR_SPILL_DIR,
    TOPIC_FINANCIAL_DOCUMENTS,
    TOPIC_FINANCIAL_DOCUMENTS_DLQ,
    TOPIC_LLM_RESULTS,
)
from libs.common.kafka.records import PUBLISH_DEADLINE_S
from libs.common.kit import ServiceSettings

Positive = Annotated[float, msgspec.Meta(gt=0)]


class ProcessorSettings(ServiceSettings, frozen=True, kw_only=True):
    env_prefix: ClassVar[str] = "PROCESSOR_"
    env_aliases: ClassVar = {
        **ServiceSettings.env_aliases,
        "bootstrap_servers": ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BROKERS"),
        "input_topic": ("INPUT_TOPIC",),
        "output_topic": ("OUTPUT_TOPIC",),
        "dlq_topic": ("DLQ_TOPIC",),
        "llm_url": ("LLM_URL",),
        "model_name": ("MODEL_NAME",),
        "llm_timeout_s": ("LLM_TIMEOUT",),
        "llm_api_key": ("LLM_API_KEY",),
    }

    port: int = KAFKA_LLM_PROCESSOR_PORT
    bootstrap_servers: str = f"127.0.0.1:{KAFKA_PORT}"
    input_topic: str = TOPIC_FINANCIAL_DOCUMENTS
    output_topic: str = TOPIC_LLM_RESULTS
    dlq_topic: str = TOPIC_FINANCIAL_DOCUMENTS_DLQ
    group_id: str = "pas-kafka-llm-processor"
    llm_url: str = f"http://localhost:{LLAMA31_8B_PORT}/v1"
    """OpenAI-compatible: a PAS LLM service, the router (:6103/v1) or vLLM (:8000/v1)."""
    model_name: str | None = None
    llm_api_key: str | None = None
    llm_timeout_s: Positive = 60.0
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 16
    """LLM calls in flight at once; fetching pauses while they are all busy."""
    max_unacknowledged: Annotated[int, msgspec.Meta(ge=1, le=65536)] = 256
    """Results (or dead letters) handed to the producer and not yet acknowledged, at most: a
    slot is free once its result is handed over, and fetching also pauses above this."""
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    retry_backoff_s: Positive = 0.5
    grounding_retry: bool = True
    """Ask once more, with a stricter instruction, when a key figure or a sentiment's reason is
    not in the document; what stays ungrounded is published with ``status: ungrounded``."""
    max_tokens: Annotated[int, msgspec.Meta(ge=16)] = 384
    max_parts: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 64
    """A document longer than the model's context is read in parts, at most this many (a longer
    one is dead-lettered as ``too_long``); 1: never in parts."""
    commit_interval_s: Positive = 1.0
    session_timeout_s: Annotated[float, msgspec.Meta(ge=1, le=300)] = 10.0
    """How soon the group notices a processor that died and gives its partitions to another
    (a smaller value also makes a group form sooner on brokers that hold a join for half of
    it, as the embedded one does)."""
    max_message_bytes: Annotated[int, msgspec.Meta(ge=1024)] = 1_048_576
    """Larger messages go to the DLQ unread (1 MiB: the most a default Kafka broker carries)."""
    drain_timeout_s: Positive = 120.0
    """On shutdown, how long in-flight documents may take to finish."""
    publish_deadline_s: Positive = PUBLISH_DEADLINE_S
    compression: Literal["gzip", "lz4", "zstd", "snappy", "none"] = "gzip"
    """The codec results and dead letters are written with (Kafka's ``compression.type``):
    every Kafka client reads gzip, the spec's. aiokafka compresses it at level 9, which no
    setting changes: zstd takes a sixth of the time for a smaller batch (docs/benchmarks.md),
    for a deployment whose consumers all read it."""
    spill_dir: Annotated[str, msgspec.Meta(min_length=1)] = PROCESSOR_SPILL_DIR
    """Where a document that no topic takes (result and dead letter both refused) is written,
    in ``spilled.jsonl``, before its offset is committed."""

    @property
    def longest_document_s(self) -> float:
        """The longest one document may take until it is recorded (and the loop has room for
        another): every attempt timing out, the longest backoffs between them, and the
        publication of its result then of its dead letter each taking their whole deadline (the
        spill file after that is a local write). Twice the LLM's part when an ungrounded answer
        is asked again. A document read in parts asks in rounds (its halves at once): down the
        splits, its smallest parts, then each level's summary back up."""
        backoff_s = self.retry_backoff_s * 16 * 2  # wait_max plus as much jitter
        questions = 2 if self.grounding_retry else 1
        llm_s = questions * self.max_attempts * (self.llm_timeout_s + backoff_s)
        rounds = 2 * math.ceil(math.log2(self.max_parts)) + 1
        return rounds * llm_s + 2 * self.publish_deadline_s + 10.0
