# Shared by the start/stop scripts: where PAS keeps PID files and logs, and how a service is
# started, health-checked and stopped. Source it; do not run it.

PAS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -f "$PAS_ROOT/.env" ]; then
    set -a
    # shellcheck disable=SC1091
    . "$PAS_ROOT/.env"
    set +a
fi
# The spec's KAFKA_BROKERS names the cluster as KAFKA_BOOTSTRAP_SERVERS does: with it alone, the
# embedded broker must not start and every script and service must use the cluster.
if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ] && [ -n "${KAFKA_BROKERS:-}" ]; then
    export KAFKA_BOOTSTRAP_SERVERS="$KAFKA_BROKERS"
fi
PAS_HOME="${PAS_HOME:-$PAS_ROOT/.pas}"
PAS_RUN_DIR="$PAS_HOME/run"
PAS_LOG_DIR="$PAS_HOME/logs"
PAS_PYTHON="${PAS_PYTHON:-$PAS_ROOT/.venv/bin/python}"
PAS_HOST="${PAS_HOST:-127.0.0.1}"
mkdir -p "$PAS_RUN_DIR" "$PAS_LOG_DIR" "$PAS_HOME/data"

# pas_started_at PID: when the process began (clock ticks since boot: /proc/PID/stat's 22nd
# field, after the command's name, which may hold spaces); fails without /proc.
pas_started_at() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # shellcheck disable=SC2086
    set -- ${stat##*) }
    echo "${20}"
}

# pas_record_pid NAME PID: the PID file, and beside it when the process began, so that a PID
# file left by a reboot or a kill -9 is not taken for a live service once the PID is reused.
pas_record_pid() {
    echo "$2" >"$PAS_RUN_DIR/$1.pid"
    pas_started_at "$2" >"$PAS_RUN_DIR/$1.started" 2>/dev/null || rm -f "$PAS_RUN_DIR/$1.started"
}

# pas_pid_alive NAME: NAME's process runs (a PID file whose process is gone, or is another
# process now, is removed: nothing may be signalled on its word).
pas_pid_alive() {
    local pidfile="$PAS_RUN_DIR/$1.pid" startfile="$PAS_RUN_DIR/$1.started" pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null &&
        { [ ! -f "$startfile" ] || [ "$(pas_started_at "$pid")" = "$(cat "$startfile")" ]; }; then
        return 0
    fi
    rm -f "$pidfile" "$startfile"
    return 1
}

# pas_running NAME PORT HOST: NAME's process runs and listens on PORT. One that runs without
# listening is starting or stopping (killed by hand a moment ago, say): wait until it listens
# or is gone, 30 s at most (then it is taken as running, as before).
pas_running() {
    local name="$1" port="$2" host="$3" waited=0
    while pas_pid_alive "$name"; do
        if pas_port_taken "$port" "$host" || [ "$waited" -ge 60 ]; then
            return 0
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
    return 1
}

# pas_probe_host HOST: the address to knock on for a service bound to HOST (a wildcard
# address listens on loopback too).
pas_probe_host() {
    local bare="${1#[}"
    bare="${bare%]}"
    case "$bare" in
        "" | 0.0.0.0 | "::") echo 127.0.0.1 ;;
        *:*) echo "[$bare]" ;;
        *) echo "$bare" ;;
    esac
}

# pas_port_taken PORT [HOST]: something listens on HOST (default PAS_HOST) at PORT.
pas_port_taken() {
    local probe
    probe="$(pas_probe_host "${2:-$PAS_HOST}")"
    (exec 3<>"/dev/tcp/${probe//[\[\]]/}/$1") 2>/dev/null
}

# pas_healthy URL: URL answers 200 (asked twice a second while a service starts: urllib, not
# httpx, whose import and CA bundle took three times the CPU from the service starting).
pas_healthy() {
    "$PAS_PYTHON" - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=2) as answer:
    sys.exit(0 if answer.status == 200 else 1)
PY
}

# pas_start_process NAME PORT COMMAND...: start a long-running command in the background
# (unless NAME runs already) and wait until it listens on PORT (of PAS_BIND_HOST, default
# PAS_HOST).
pas_start_process() {
    local name="$1" port="$2" host="${PAS_BIND_HOST:-$PAS_HOST}"
    shift 2
    local pidfile="$PAS_RUN_DIR/$name.pid" log="$PAS_LOG_DIR/$name.log"
    if pas_running "$name" "$port" "$host"; then
        echo "$name already running (pid $(cat "$pidfile")) on port $port"
        return 0
    fi
    if pas_port_taken "$port" "$host"; then
        echo "error: port $port is taken, so $name cannot start there." >&2
        echo "       See what holds it with: ss -ltnp 'sport = :$port'" >&2
        echo "       or choose another port in .env." >&2
        return 1
    fi
    # exec: the PID recorded is the command's own, so that stop signals it, not a shell.
    (cd "$PAS_ROOT" && exec nohup "$@" >>"$log" 2>&1) &
    pas_record_pid "$name" $!
    pas_wait_for "$name" "port $port" pas_port_taken "$port" "$host"
}

# pas_start NAME APP PORT [PREFIX]: start `uvicorn APP` on PORT, wait until /health answers.
# It listens on ${PREFIX}HOST, else PAS_HOST (loopback by default). Beyond loopback the
# service refuses to start without a token (${PREFIX}TOKEN or PAS_TOKEN; see docs/security.md).
pas_start() {
    local name="$1" app="$2" port="$3" prefix="${4:-}"
    local host="$PAS_HOST" host_var="${prefix}HOST"
    if [ -n "$prefix" ] && [ -n "${!host_var:-}" ]; then
        host="${!host_var}"
    fi
    if [ ! -x "$PAS_PYTHON" ]; then
        echo "error: $PAS_PYTHON not found; run scripts/setup.sh first" >&2
        return 1
    fi
    if pas_running "$name" "$port" "$host"; then
        echo "$name already running (pid $(cat "$PAS_RUN_DIR/$name.pid")) on port $port"
        return 0
    fi
    local probe
    probe="$(pas_probe_host "$host")"
    PAS_BIND_HOST="$host" pas_start_process "$name" "$port" "$PAS_PYTHON" -m uvicorn "$app" \
        --host "$host" --port "$port" --no-access-log --timeout-graceful-shutdown 10 || return 1
    pas_wait_for "$name" "/health" pas_healthy "http://$probe:$port/health" || return 1
    local where="http://$probe:$port"
    [ "$probe" = "$host" ] || where="$where (listening on $host)"
    echo "$name up on $where (pid $(cat "$PAS_RUN_DIR/$name.pid"), log $PAS_LOG_DIR/$name.log)"
}

# pas_wait_all PID...: wait for each of these background jobs (starts that do not need each
# other, run at once so that their imports and model loads share the cores instead of taking
# turns); fails if any of them failed, once all are done.
pas_wait_all() {
    local failed=0 pid
    for pid in "$@"; do
        wait "$pid" || failed=1
    done
    return "$failed"
}

# pas_wait_for NAME WHAT CHECK ARGS...: until CHECK ARGS succeeds; fail with the log's tail if
# NAME exits first or 30 s pass.
pas_wait_for() {
    local name="$1" what="$2"
    shift 2
    local log="$PAS_LOG_DIR/$name.log" waited=0
    until "$@"; do
        if ! pas_pid_alive "$name"; then
            echo "error: $name exited during start; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            rm -f "$PAS_RUN_DIR/$name.pid"
            return 1
        fi
        if [ "$waited" -ge 60 ]; then
            echo "error: $name did not answer ($what) within 30 s; see $log" >&2
            return 1
        fi
        sleep 0.5
        waited=$((waited + 1))
    done
}

# pas_stop NAME: SIGTERM, wait for the graceful shutdown, SIGKILL only as a last resort.
pas_stop() {
    local name="$1" pidfile="$PAS_RUN_DIR/$1.pid"
    if ! pas_pid_alive "$name"; then
        rm -f "$pidfile" "$PAS_RUN_DIR/$name.started"
        return 0
    fi
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM "$pid"
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "warning: $name (pid $pid) ignored SIGTERM for 15 s; killing it" >&2
        kill -KILL "$pid"
    fi
    rm -f "$pidfile" "$PAS_RUN_DIR/$name.started"
    echo "$name stopped"
}
