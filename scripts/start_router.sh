#!/usr/bin/env bash
# Start the provider router (default port 6103; ROUTER_PORT overrides). It finds the LLM
# services through the registry, and remote providers in ROUTER_PROVIDERS_FILE if set.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
pas_start provider_router services.provider_router.provider_router:app "${ROUTER_PORT:-6103}" ROUTER_
