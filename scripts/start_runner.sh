#!/usr/bin/env bash
# Start the LangGraph runner (default port 6130; RUNNER_PORT overrides). With
# KAFKA_BOOTSTRAP_SERVERS set it also consumes workflow-events and answers on workflow-results.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pas_start langgraph_runner services.langgraph_runner.app:app "${RUNNER_PORT:-6130}" RUNNER_
