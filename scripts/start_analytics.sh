#!/usr/bin/env bash
# Start the analytics collector (default port 6150; ANALYTICS_PORT overrides). It consumes
# llm-usage, llm-results and workflow-results from KAFKA_BOOTSTRAP_SERVERS (ANALYTICS_CONSUME=false
# for POST /events only) and keeps its data in ANALYTICS_DB_PATH (DuckDB) or ANALYTICS_DATABASE_URL.
# The dashboard is then at http://127.0.0.1:6150/dashboard.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export ANALYTICS_DB_PATH="${ANALYTICS_DB_PATH:-$PAS_HOME/data/analytics.duckdb}"
pas_start analytics services.analytics.app:app "${ANALYTICS_PORT:-6150}" ANALYTICS_
