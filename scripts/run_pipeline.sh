#!/usr/bin/env bash
# The whole pipeline on this machine: install, start every service on the embedded defaults
# (broker, registry, version manager, LLM services, router, LangGraph runner, Kafka LLM
# processor, analytics collector); send the sample financial documents and show the results as
# they come back; trigger a workflow through Kafka as an Airflow DAG does; show what the
# analytics collector saw.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start_all.sh
. scripts/lib.sh
# The broker start_all.sh started (its export ended with it): the steps below publish there.
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$PAS_HOST:${KAFKA_PORT:-9092}}"
count="${1:-7}"
.venv/bin/python -m services.kafka_llm_processor.send_samples --count "$count"
echo
echo "results on llm-results (documents that could not be answered go to financial-documents-dlq):"
.venv/bin/python -m services.kafka_llm_processor.show_results --expect "$count" --timeout 180 || true
echo
.venv/bin/python -m scripts.workflow_demo || true
echo
echo "PAS is running. Logs: .pas/logs/   Stop it with: bash scripts/stop_all.sh"
