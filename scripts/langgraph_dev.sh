#!/usr/bin/env bash
# LangGraph Studio for PAS's workflows: `langgraph dev` serves the graphs langgraph.json lists
# (an in-memory LangGraph server, licensed for development only; production runs go through the
# PAS runner on 6130).
#
# langgraph-cli[inmem] pins libraries PAS's own .venv cannot take (its langgraph-api wants an
# older jsonschema-rs than schemathesis), so it gets a virtualenv of its own, with PAS installed
# editable into it. Created on first use (and again when pyproject.toml changes).
#
# Usage: bash scripts/langgraph_dev.sh [langgraph dev options, e.g. --port 2025 --no-browser]
# The LLM nodes use RUNNER_LLM_URL / RUNNER_LLM_MODEL (from .env or the environment).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

STUDIO_VENV="${PAS_STUDIO_VENV:-$PAS_HOME/studio-venv}"
STUDIO_PYTHON="${PAS_STUDIO_PYTHON:-python3.11}"
command -v "$STUDIO_PYTHON" >/dev/null 2>&1 || STUDIO_PYTHON=python3

if [ ! -x "$STUDIO_VENV/bin/langgraph" ] || [ "$PAS_ROOT/pyproject.toml" -nt "$STUDIO_VENV/.pas-installed" ]; then
    echo "creating $STUDIO_VENV with langgraph-cli[inmem] and PAS (first run builds llama-cpp-python unless pip has it cached)"
    "$STUDIO_PYTHON" -m venv "$STUDIO_VENV"
    "$STUDIO_VENV/bin/python" -m pip install --quiet --upgrade pip
    "$STUDIO_VENV/bin/python" -m pip install --quiet "langgraph-cli[inmem]" -e "$PAS_ROOT"
    touch "$STUDIO_VENV/.pas-installed"
fi

cd "$PAS_ROOT"
exec "$STUDIO_VENV/bin/langgraph" dev --config langgraph.json --host "$PAS_HOST" "$@"
