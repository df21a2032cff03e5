#!/usr/bin/env bash
# Runs one natter-load scenario against a fresh gateway on this host, pinned as load/RESULTS.md describes:
# the gateway on CPU 0, the harness on CPU 1. Prints the harness's final JSON line.
#
#   load/bench.sh [--gateway PATH] SCENARIO [natter-load flags...]
#
# The gateway listens on 127.0.0.1 only, with a temporary data directory that is removed afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gateway="$root/target/release/natter"
if [ "${1:-}" = "--gateway" ]; then gateway="$2"; shift 2; fi
scenario="$1"; shift
harness="$root/target/release/natter-load"
[ -x "$gateway" ] && [ -x "$harness" ] || { echo "build first: cargo build --release --workspace" >&2; exit 1; }

data="$(mktemp -d)"
port=$((20000 + RANDOM % 20000))
app=bench
secret="sk_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
NATTER_APPS="$app:$secret" RUST_LOG=warn taskset -c 0 "$gateway" --listen "127.0.0.1:$port" --data-dir "$data" >"$data/gateway.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
taskset -c 1 "$harness" "$scenario" --url "http://127.0.0.1:$port" --app "$app" --secret "$secret" --server-pid "$pid" --quiet "$@" | tail -n 1
