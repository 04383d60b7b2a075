"""Prometheus metrics of the processor."""

from __future__ import annotations

from typing import get_args

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.registry import Collector

from libs.common.schemas.documents import Task


class ProcessorMetrics:
    def __init__(self) -> None:
        self.processed = Counter(
            "pas_processor_documents_processed",
            "Documents answered on the output topic",
            ["task"],
            registry=None,
        )
        self.dead_lettered = Counter(
            "pas_processor_documents_dead_lettered",
            "Messages sent to the DLQ",
            ["reason"],
            registry=None,
        )
        self.retries = Counter(
            "pas_processor_llm_retries",
            "LLM calls retried after a transient failure",
            registry=None,
        )
        self.ungrounded = Counter(
            "pas_processor_ungrounded",
            "Answers published as ungrounded: a key figure or reason the document does not hold",
            ["task"],
            registry=None,
        )
        self.grounding_retries = Counter(
            "pas_processor_grounding_retries",
            "Answers asked again, more strictly, because the first was not grounded",
            ["task"],
            registry=None,
        )
        self.loops_cut = Counter(
            "pas_processor_loops_cut",
            "Answers published without the loop they ended in (the model said one sentence or "
            "run of words again until its token limit)",
            ["task"],
            registry=None,
        )
        self.read_in_parts = Counter(
            "pas_processor_read_in_parts",
            "Documents longer than the model's context, read in parts and their answers combined",
            ["task"],
            registry=None,
        )
        self.in_flight = Gauge(
            "pas_processor_in_flight", "Documents being processed now", registry=None
        )
        self.latency = Histogram(
            "pas_processor_document_seconds",
            "From fetch to acknowledged result",
            buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
            registry=None,
        )
        self.unpublishable = Counter(
            "pas_processor_records_unpublishable",
            "Records neither answered nor dead-lettered (both refused or past the deadline), by "
            "where they were recorded instead: spill (the spill file) or nowhere (not committed)",
            ["recorded"],
            registry=None,
        )
        self.tokens = Counter("pas_processor_tokens", "LLM tokens used", ["kind"], registry=None)
        # Children looked up once: every document counts in them (``labels()`` takes a lock and
        # builds a key each time), and they show as 0 before the first document.
        self.processed_of = {task: self.processed.labels(task) for task in get_args(Task)}
        self.prompt_tokens = self.tokens.labels("prompt")
        self.completion_tokens = self.tokens.labels("completion")
        self.lag = Gauge(
            "pas_processor_consumer_lag",
            "Messages behind the end of each partition",
            ["partition"],
            registry=None,
        )

    @property
    def collectors(self) -> list[Collector]:
        return [
            self.processed,
            self.dead_lettered,
            self.retries,
            self.ungrounded,
            self.grounding_retries,
            self.loops_cut,
            self.read_in_parts,
            self.unpublishable,
            self.in_flight,
            self.latency,
            self.tokens,
            self.lag,
        ]
