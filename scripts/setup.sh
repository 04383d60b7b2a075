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

# llama.cpp is compiled for this machine's CPU, except for AMX: ggml's AMX matrix kernels crash
# (SIGSEGV in ggml_backend_amx_mul_mat on the first decode) on the Xeon virtual machines PAS is
# tested on, which report AMX. With GGML_NATIVE=OFF ggml builds for AVX2, FMA, F16C and BMI2;
# AVX-512 is added where the CPU has it. PAS reads text only, so llama-cpp-python's multimodal
# library (mtmd: a fifth of the compiling, docs/benchmarks.md) is not built. A CMAKE_ARGS of
# your own (a GPU build) wins.
llama_cmake_args() {
    local args="-DLLAVA_BUILD=OFF"
    if [ "$(uname -m)" = x86_64 ]; then
        local flags=" $(grep -m1 '^flags' /proc/cpuinfo) "
        args+=" -DGGML_NATIVE=OFF"
        if [[ $flags == *" avx512f "* && $flags == *" avx512bw "* && $flags == *" avx512vl "* ]]
        then
            args+=" -DGGML_AVX512=ON"
            [[ $flags == *" avx512vbmi "* ]] && args+=" -DGGML_AVX512_VBMI=ON"
            [[ $flags == *" avx512_vnni "* ]] && args+=" -DGGML_AVX512_VNNI=ON"
            [[ $flags == *" avx512_bf16 "* ]] && args+=" -DGGML_AVX512_BF16=ON"
        fi
    fi
    echo "$args"
}
export CMAKE_ARGS="${CMAKE_ARGS-$(llama_cmake_args)}"

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.pas-installed
wanted="$(cat pyproject.toml "$lock" <(echo "$extras $CMAKE_ARGS") | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
    mkdir -p .pas/logs
    log=.pas/logs/setup.log
    # pip's own cache keeps one wheel per source archive whatever CMAKE_ARGS built it, so the
    # llama.cpp wheel is built once per set of flags into a cache of PAS's and taken from there.
    flags_hash="$(echo "$CMAKE_ARGS" | sha256sum | cut -c1-16)"
    llama_wheels="${XDG_CACHE_HOME:-$HOME/.cache}/pas/llama-wheels/$flags_hash"
    # Installed over any build already in .venv (same version, other flags).
    install_llama() {
        [[ ,$extras, == *,embedded,* ]] || return 0
        if ! ls "$llama_wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
            .venv/bin/python -m pip wheel --no-deps --no-cache-dir --constraint "$lock" \
                --wheel-dir "$llama_wheels" "$(grep -m1 '^llama-cpp-python==' "$lock")"
        fi
        .venv/bin/python -m pip install --no-deps --force-reinstall \
            "$llama_wheels"/llama_cpp_python-*.whl
    }
    echo "installing PAS into .venv; the first time on a machine pip builds llama.cpp" \
        "(a few minutes)..."
    if ! { .venv/bin/python -m pip install --constraint "$lock" pip && install_llama &&
           .venv/bin/python -m pip install --constraint "$lock" --editable ".[$extras]"; } \
           >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "error: installing PAS failed; the whole log is in $log" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
fi
