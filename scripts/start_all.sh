#!/usr/bin/env bash
# Start every PAS service on its embedded defaults, in dependency order.
# PID files: .pas/run/, logs: .pas/logs/ (PAS_HOME moves both).
set -euo pipefail
here="$(dirname "$0")"
bash "$here/start_kafka.sh"
bash "$here/start_registry.sh"
bash "$here/start_llm_services.sh"
bash "$here/start_router.sh"
bash "$here/start_processor.sh"
