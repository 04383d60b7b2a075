#!/usr/bin/env bash
# Stop every PAS service that start_all.sh (or a start_<name>.sh) started, newest first.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
shopt -s nullglob
pidfiles=("$PAS_RUN_DIR"/*.pid)
if [ ${#pidfiles[@]} -eq 0 ]; then
    echo "no PAS service is running"
    exit 0
fi
for pidfile in $(ls -t "${pidfiles[@]}"); do
    pas_stop "$(basename "$pidfile" .pid)"
done
