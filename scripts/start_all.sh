#!/usr/bin/env bash
# Start every PAS service on its embedded defaults, in dependency order; the services of a
# stage need only those of the stages before it and start at once (pas_wait_all).
# PID files: .pas/run/, logs: .pas/logs/ (PAS_HOME moves both).
set -euo pipefail
here="$(dirname "$0")"
. "$here/lib.sh"
bash "$here/start_kafka.sh"
# Every service after this one talks to the same broker: the LLM services and the router
# publish their usage events there, the collector reads them.
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-$PAS_HOST:${KAFKA_PORT:-9092}}"
bash "$here/start_registry.sh"
# They register with the registry; the collector reads the broker only.
bash "$here/start_versioning.sh" &
versioning=$!
bash "$here/start_llm_services.sh" &
llm_services=$!
bash "$here/start_analytics.sh" &
pas_wait_all "$versioning" "$llm_services" $!
# The router routes to the LLM services it finds registered.
bash "$here/start_router.sh"
# The runner asks the router and the version manager; the processor asks the LLM service.
bash "$here/start_runner.sh" &
runner=$!
bash "$here/start_processor.sh" &
pas_wait_all "$runner" $!
