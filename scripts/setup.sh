#!/usr/bin/env bash
# Create .venv and install PAS with its dev tools, the embedded model and broker, at the exact
# versions in requirements.lock (refreshed by scripts/lock.sh). Re-running is cheap: it
# reinstalls only when pyproject.toml, the lock or the extras changed.
#   PAS_EXTRAS=postgres bash scripts/setup.sh    other extras (default: dev,embedded)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
extras="${PAS_EXTRAS:-dev,embedded}"
lock=requirements.lock
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: PAS needs Python 3.11 or newer; $python is $("$python" --version 2>&1)" >&2
    exit 1
fi
# Every package pyproject.toml names must be pinned: one missing from the lock would be
# installed at whatever version is newest that day.
"$python" - "$lock" <<'PY'
import re
import sys
import tomllib


def name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[^A-Za-z0-9._-]", requirement.strip())[0]).lower()


project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = {name(r) for r in project["dependencies"]}
for requirements in project.get("optional-dependencies", {}).values():
    wanted |= {name(r) for r in requirements}
pinned = {name(line) for line in open(sys.argv[1]) if re.match(r"[A-Za-z0-9]", line)}
missing = sorted(wanted - pinned - {name(project["name"])})
if missing:
    sys.exit(f"error: {sys.argv[1]} pins no {', '.join(missing)}: run bash scripts/lock.sh")
PY
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.pas-installed
wanted="$(cat pyproject.toml "$lock" <(echo "$extras") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p .pas/logs
    log=.pas/logs/setup.log
    echo "installing PAS into .venv; the first time pip builds llama.cpp (about ten minutes)..."
    if ! { .venv/bin/python -m pip install --constraint "$lock" pip &&
           .venv/bin/python -m pip install --constraint "$lock" --editable ".[$extras]"; } \
           >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: installing PAS failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
fi
