#!/usr/bin/env bash
# Scale-out figures for docs/SCALING.md: one tenant on the Graph simulator (`atlas sim
# serve`), one S3 server (scripts/s3-server.sh), and 1, 2 and 4 worker processes
# `atlas backup --shard i/N` started at once — the pods of a Kubernetes Indexed Job, on
# loopback. Each round backs up the whole tenant into a fresh bucket (a full backup) and
# reports the wall time from the first start to the last exit, the messages stored, and
# the load average of the machine when the round started (the machine may be shared).
#
# Usage: bash scripts/scaling.sh [--binary PATH] [--users N] [--messages N] [--workers "1 2 4"]
#   --binary    the atlas binary to measure (default target/release/atlas; build it with
#               cargo build --release -p atlas-cli — benchmarks use optimized builds only)
set -euo pipefail
cd "$(dirname "$0")/.."

binary=target/release/atlas
users=16
messages=150
workers="1 2 4"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --users) users="$2"; shift 2 ;;
        --messages) messages="$2"; shift 2 ;;
        --workers) workers="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "scaling.sh: unknown argument $1 (see --help)" >&2; exit 3 ;;
    esac
done
[[ -x "$binary" ]] || { echo "scaling.sh: no binary at $binary (cargo build --release -p atlas-cli)" >&2; exit 1; }

eval "$(scripts/s3-server.sh start)"
work="$(mktemp -d /tmp/atlas-scaling.XXXXXX)"
sim_pid=""
cleanup() {
    [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The simulator, its connection details on the first line of --json output.
"$binary" --json sim serve --users "$users" --shared-mailboxes 0 --messages-per-user "$messages" --seed 1 \
    >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 1 100); do
    [[ -s "$work/sim.out" ]] && break
    sleep 0.1
done
ready="$(head -n1 "$work/sim.out")"
field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$ready" "$1"; }

export ATLAS_TENANT_ID="$(field tenantId)"
export ATLAS_CLIENT_ID="$(field clientId)"
export ATLAS_CLIENT_SECRET="$(field clientSecret)"
export ATLAS_GRAPH_ENDPOINT="$(field graphEndpoint)"
export ATLAS_AUTHORITY_HOST="$(field authorityHost)"
export ATLAS_ENCRYPTION_PASSPHRASE="scaling benchmark passphrase"
# The cheapest key derivation: opening the repository is not what is measured.
export ATLAS_KDF=scrypt-n14
export ATLAS_S3_ENDPOINT="$ATLAS_TEST_S3_ENDPOINT"
export ATLAS_S3_ACCESS_KEY=test-access ATLAS_S3_SECRET_KEY=test-secret
export ATLAS_S3_FORCE_PATH_STYLE=true
unset ATLAS_REPOSITORY

echo "tenant: $users mailboxes x $messages messages; binary $binary; $(nproc) CPUs"
printf '%-8s %-10s %-10s %-12s %-10s %s\n' workers wall_s messages messages/s speedup load_at_start
base=""
for n in $workers; do
    export ATLAS_S3_BUCKET="atlas-scaling-$n-$(date +%s%N | tail -c 9)"
    "$binary" -q init >/dev/null
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    start=$(date +%s.%N)
    pids=()
    for i in $(seq 0 $((n - 1))); do
        "$binary" --json backup --shard "$i/$n" >"$work/w$i.json" 2>"$work/w$i.err" &
        pids+=($!)
    done
    for p in "${pids[@]}"; do
        wait "$p" || { echo "a worker failed:"; cat "$work"/w*.err; exit 1; }
    done
    end=$(date +%s.%N)
    stored=$(python3 -c '
import json, sys
print(sum(m["summary"]["downloaded"] for f in sys.argv[1:] for m in json.load(open(f))["mailboxes"]))' "$work"/w*.json)
    rm -f "$work"/w*.json "$work"/w*.err
    wall=$(python3 -c "print(f'{$end - $start:.1f}')")
    rate=$(python3 -c "print(f'{$stored / ($end - $start):.0f}')")
    [[ -z "$base" ]] && base="$rate"
    speedup=$(python3 -c "print(f'{$rate / $base:.2f}')")
    printf '%-8s %-10s %-10s %-12s %-10s %s\n' "$n" "$wall" "$stored" "$rate" "$speedup" "$load"
done
