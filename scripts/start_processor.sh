#!/usr/bin/env bash
# Start the Kafka LLM processor (health and metrics on 6160; PROCESSOR_PORT overrides).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pas_start kafka_llm_processor services.kafka_llm_processor.app:app "${PROCESSOR_PORT:-6160}" PROCESSOR_
