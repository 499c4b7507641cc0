#!/usr/bin/env bash
# A real S3 server for Atlas's tests: moto (PyPI) on 127.0.0.1 with a free port.
#
# Usage:
#   eval "$(scripts/s3-server.sh start)"   # installs moto if missing, starts it, waits until
#                                          # it answers, exports ATLAS_TEST_S3_ENDPOINT and
#                                          # ATLAS_TEST_S3_PID into the calling shell
#   cargo test -p atlas-store              # the S3 tests run against it
#   scripts/s3-server.sh stop              # stops the server started above
#   scripts/s3-server.sh status            # says whether it runs and where
#
# `start` prints only `export ...` lines on stdout (everything else goes to stderr), so the
# `eval` form is safe. The server's state (pid, port, log) lives in $ATLAS_S3_SERVER_DIR
# (default /tmp/atlas-s3-server); `stop` reads it from there, so it also works from another
# shell. Starting while one runs reuses it.
#
# Why moto: it enforces If-None-Match on PUT, versioning and Object Lock (governance and
# compliance retention refuse deletes), which is what the S3 backend's tests pin. It does
# not check signatures or credentials, nor (as far as Atlas's tests found) every header;
# the Rust tests cover those with an in-test HTTP server (see tests/it/s3.rs).
set -euo pipefail

STATE_DIR="${ATLAS_S3_SERVER_DIR:-/tmp/atlas-s3-server}"
MOTO_VERSION="${ATLAS_MOTO_VERSION:-5.2.1}"

log() { echo "s3-server: $*" >&2; }

running_pid() {
    local pid
    [[ -f "$STATE_DIR/pid" ]] || return 1
    pid="$(cat "$STATE_DIR/pid")"
    kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

install_moto() {
    if python3 -c 'import moto.server, flask, flask_cors' 2>/dev/null; then
        return 0
    fi
    log "installing moto[server]==$MOTO_VERSION from PyPI"
    python3 -m pip install --quiet "moto[server]==$MOTO_VERSION" >&2 \
        || python3 -m pip install --quiet --break-system-packages "moto[server]==$MOTO_VERSION" >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_until_answering() {
    local endpoint="$1" pid="$2"
    for _ in $(seq 1 150); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "moto exited during startup; its log:"
            tail -n 30 "$STATE_DIR/log" >&2 || true
            return 1
        fi
        if python3 - "$endpoint" <<'PY' 2>/dev/null; then
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=1).read()
PY
            return 0
        fi
        sleep 0.2
    done
    log "moto did not answer on $endpoint within 30 s"
    return 1
}

start() {
    mkdir -p "$STATE_DIR"
    local pid port
    if pid="$(running_pid)"; then
        port="$(cat "$STATE_DIR/port")"
        log "already running (pid $pid) on port $port"
    else
        install_moto
        port="$(free_port)"
        # setsid: its own process group, so `stop` ends exactly this server and its children.
        setsid python3 -m moto.server -H 127.0.0.1 -p "$port" >"$STATE_DIR/log" 2>&1 &
        pid=$!
        echo "$pid" >"$STATE_DIR/pid"
        echo "$port" >"$STATE_DIR/port"
        if ! wait_until_answering "http://127.0.0.1:$port" "$pid"; then
            stop
            exit 1
        fi
        log "moto running (pid $pid) on http://127.0.0.1:$port"
    fi
    echo "export ATLAS_TEST_S3_ENDPOINT=http://127.0.0.1:$port"
    echo "export ATLAS_TEST_S3_PID=$pid"
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        log "stopped moto (pid $pid)"
    fi
    rm -f "$STATE_DIR/pid" "$STATE_DIR/port"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        echo "moto running (pid $pid) on http://127.0.0.1:$(cat "$STATE_DIR/port")"
    else
        echo "moto not running"
        return 1
    fi
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
