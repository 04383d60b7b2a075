"""Fixed names shared by services, scripts, tests and docs (see CONVENTIONS.md)."""

from __future__ import annotations

from typing import Final

# Default ports, loopback; each service's settings can override its own.
REGISTRY_PORT: Final = 6121
PROVIDER_ROUTER_PORT: Final = 6103
LLAMA31_8B_PORT: Final = 8050
TINYLLAMA_PORT: Final = 8051
TLC_CLASSIFIER_PORT: Final = 8052
KAFKA_LLM_PROCESSOR_PORT: Final = 6160
LANGGRAPH_RUNNER_PORT: Final = 6130
VERSIONING_PORT: Final = 6140
ANALYTICS_PORT: Final = 6150
KAFKA_PORT: Final = 9092

KAFKA_FETCH_MAX_WAIT_MS: Final = 100
"""The longest a PAS consumer's fetch waits at the broker for records (Kafka's
``fetch.max.wait.ms``; aiokafka's default is 500). A Kafka broker answers a waiting fetch as
soon as records arrive, so there this only sets how often an idle consumer asks again (ten
times a second). The embedded Tansu broker answers a fetch of a topic of several partitions
only when it looks again, not as records arrive: with 500 ms a document's result through the
processor, or an event's outcome through the runner's bridge, came back after 253 ms (median);
with 100, after 53 (``bench/kafka_latency.py``). Used where someone waits for the answer: the
processor, the runner's bridge, ``pas``'s readers and the DAGs'. The version manager and the
analytics collector keep aiokafka's 500 ms: nobody waits on their counts, and each idle fetch
costs the embedded broker (the whole stack idle: 3.3 % of a core with every consumer at
500 ms, 8.4 % with every one at 100, 6.0 % as set here)."""

DEFAULT_REGISTRY_URL: Final = f"http://localhost:{REGISTRY_PORT}"

# Kafka topics.
TOPIC_FINANCIAL_DOCUMENTS: Final = "financial-documents"
TOPIC_LLM_RESULTS: Final = "llm-results"
TOPIC_FINANCIAL_DOCUMENTS_DLQ: Final = "financial-documents-dlq"
TOPIC_WORKFLOW_EVENTS: Final = "workflow-events"
TOPIC_WORKFLOW_RESULTS: Final = "workflow-results"
TOPIC_WORKFLOW_EVENTS_DLQ: Final = "workflow-events-dlq"
TOPIC_LLM_USAGE: Final = "llm-usage"
TOPIC_ANALYTICS_DLQ: Final = "analytics-dlq"
TOPIC_VERSIONING_DLQ: Final = "versioning-dlq"
TOPIC_DLQ_REPLAYS: Final = "pas-dlq-replays"
"""``pas dlq replay``'s receipts: which letter's original was sent again, as which record."""

PROCESSOR_SPILL_DIR: Final = ".pas/spill/kafka_llm_processor"
"""Where the processor writes what no topic takes (``spilled.jsonl``), relative to its working
directory; ``pas spill`` reads it from the same place."""

# HTTP headers PAS sets or reads.
HEADER_REQUEST_ID: Final = "X-Request-ID"
HEADER_CATALOG_INDEX: Final = "X-PAS-Index"
