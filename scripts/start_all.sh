#!/usr/bin/env bash
# Start every PAS service on its embedded defaults, in dependency order.
# PID files: .pas/run/, logs: .pas/logs/ (PAS_HOME moves both).
set -euo pipefail
here="$(dirname "$0")"
. "$here/lib.sh"
bash "$here/start_kafka.sh"
# Every service after this one talks to the same broker: the LLM services and the router
# publish their usage events there, the collector reads them.
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$PAS_HOST:${KAFKA_PORT:-9092}}"
bash "$here/start_registry.sh"
bash "$here/start_versioning.sh"
bash "$here/start_llm_services.sh"
bash "$here/start_router.sh"
bash "$here/start_runner.sh"
bash "$here/start_processor.sh"
bash "$here/start_analytics.sh"
