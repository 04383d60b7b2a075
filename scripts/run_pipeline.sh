#!/usr/bin/env bash
# The whole pipeline on this machine: install, start the broker, the registry, the LLM
# services, the router and the Kafka LLM processor; send the sample financial documents;
# show the results as they come back.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start_all.sh
. scripts/lib.sh
count="${1:-7}"
.venv/bin/python -m services.kafka_llm_processor.producer --count "$count"
echo
echo "results on llm-results (documents that could not be answered go to financial-documents-dlq):"
.venv/bin/python -m services.kafka_llm_processor.consumer --expect "$count" --timeout 180 || true
echo
echo "PAS is running. Logs: .pas/logs/   Stop it with: bash scripts/stop_all.sh"
