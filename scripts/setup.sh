#!/usr/bin/env bash
# Create .venv and install PAS with its dev tools. Re-running is cheap: it reinstalls only when
# pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: PAS needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.pas-installed
wanted="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p .pas/logs
    log=.pas/logs/setup.log
    echo "installing PAS into .venv; the first time pip builds llama.cpp (about ten minutes)..."
    if ! { .venv/bin/python -m pip install --upgrade pip &&
           .venv/bin/python -m pip install -e '.[dev]'; } >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: installing PAS failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
fi
