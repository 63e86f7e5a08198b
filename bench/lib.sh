# Shared helpers for the bench/ scripts; sourced, never run.
# shellcheck shell=bash

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OUT="${BENCH_OUT:-$BENCH_DIR/out}"
PY=(python3 "$BENCH_DIR/bench.py")

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

# Raise the soft open-file limit to the hard limit: nginx holds one socket per port and
# the exporters one per probe in flight.
raise_nofile() {
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

# Stop a process we started, by pid, and wait for it to go (bounded).
stop_pid() {
    local pid="$1"
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}
