#!/usr/bin/env bash
# Start the version manager (default port 6140; VERSIONING_PORT overrides). Its git repository
# and experiments database live under $PAS_HOME/data/versioning unless VERSIONING_REPO_PATH
# says otherwise; with KAFKA_BOOTSTRAP_SERVERS set it also reads outcomes from workflow-results.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
export VERSIONING_REPO_PATH="${VERSIONING_REPO_PATH:-$PAS_HOME/data/versioning/repo}"
pas_start versioning services.versioning.app:app "${VERSIONING_PORT:-6140}" VERSIONING_
