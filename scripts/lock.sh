#!/usr/bin/env bash
# Refresh requirements.lock, the exact versions scripts/setup.sh (and so CI) installs. Run it
# after changing a dependency in pyproject.toml, then commit both files:
#   bash scripts/lock.sh                          keep every pin that still fits, add the new ones
#   bash scripts/lock.sh --upgrade-package NAME   move one package to its newest release
#   bash scripts/lock.sh --upgrade                move every package to its newest release
# uv resolves (for every platform and Python >= 3.11, with markers where they differ); it is
# installed from PyPI into .pas/lock-tools at the version below. The lock itself is a plain pip
# constraints file: installing from it needs only Python and pip.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
uv_version=0.13.9
tools=.pas/lock-tools
python="${PYTHON:-python3}"
if ! "$tools/bin/uv" --version 2>/dev/null | grep -q "^uv $uv_version\b"; then
    rm -rf "$tools"
    "$python" -m venv "$tools"
    "$tools/bin/python" -m pip install --quiet "uv==$uv_version"
fi
# pip is locked too: setup.sh installs the locked pip before anything else.
echo "pip" | "$tools/bin/uv" pip compile pyproject.toml - \
    --extra dev --extra embedded --extra postgres \
    --universal --python-version 3.11 \
    --custom-compile-command "bash scripts/lock.sh" \
    --output-file requirements.lock --quiet "$@"
echo "requirements.lock refreshed; commit it with pyproject.toml"
