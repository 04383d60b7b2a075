#!/usr/bin/env bash
# From a fresh clone: install, start PAS on its embedded defaults, and show it working.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/start_all.sh
.venv/bin/python -m scripts.demo
echo
echo "PAS is running. Logs: .pas/logs/   Stop it with: bash scripts/stop_all.sh"
