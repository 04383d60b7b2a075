#!/usr/bin/env bash
# Start the agent registry (default port 6121; REGISTRY_PORT overrides).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pas_start registry services.registry.registry_service:app "${REGISTRY_PORT:-6121}" REGISTRY_
