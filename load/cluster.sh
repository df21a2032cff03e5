#!/usr/bin/env bash
# Runs one natter-load scenario against N gateway nodes on one PostgreSQL database (a fresh schema per run) and,
# with more than one node, one Redis; prints the harness's final JSON line, plus the CPU seconds PostgreSQL and
# Redis used during the run. Everything on the server side runs on CPU 0 (the nodes, and PostgreSQL and Redis when
# this script may move them), the harness on CPU 1, as load/RESULTS.md describes.
#
#   load/cluster.sh NODES POSTGRES_URL [REDIS_URL] SCENARIO [natter-load flags...]
#   e.g. load/cluster.sh 3 postgres://natter@127.0.0.1:55432/natter redis://127.0.0.1:56379 fanout --subscribers 999
#
# `eval "$(.ci/services start)"` starts a PostgreSQL and a Redis on 127.0.0.1 and prints their URLs.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
gateway="${NATTER_GATEWAY:-$root/target/release/natter}"
harness="$root/target/release/natter-load"
[ -x "$gateway" ] && [ -x "$harness" ] || { echo "build first: cargo build --release --workspace" >&2; exit 1; }
nodes="$1"; database="$2"; shift 2
broker=""
if [ "$nodes" -gt 1 ]; then broker="$1"; shift; fi
scenario="$1"; shift

schema="bench_$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
psql "$database" -qc "CREATE SCHEMA $schema" >/dev/null
separator='?'; case "$database" in *\?*) separator='&' ;; esac
url="$database${separator}options=-csearch_path%3D$schema"

# The database and the broker share CPU 0 with the nodes, when this user may move them.
server_pids() { { pgrep -x postgres || true; pgrep -x redis-server || true; } | tr '\n' ' '; }
for pid in $(server_pids); do taskset -a -p -c 0 "$pid" >/dev/null 2>&1 || true; done
cpu_of() { # CPU seconds (user + system) of these processes
    local ticks total=0
    ticks="$(getconf CLK_TCK)"
    for pid in "$@"; do
        [ -r "/proc/$pid/stat" ] || continue
        total=$((total + $(awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat")))
    done
    awk -v t="$total" -v k="$ticks" 'BEGIN { printf "%.3f", t / k }'
}

app=bench
secret="sk_bench_$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
dirs=(); pids=(); urls=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "${dirs[@]}"
    psql "$database" -qc "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for i in $(seq "$nodes"); do
    dir="$(mktemp -d)"; dirs+=("$dir")
    port=$((20000 + RANDOM % 20000))
    args=(--listen "127.0.0.1:$port" --data-dir "$dir" --database-url "$url")
    [ -n "$broker" ] && args+=(--broker-url "$broker")
    NATTER_APPS="$app:$secret" RUST_LOG=warn taskset -c 0 "$gateway" "${args[@]}" >"$dir/gateway.log" 2>&1 &
    pids+=($!); urls+=("http://127.0.0.1:$port")
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
done
backing="$(server_pids)"
# shellcheck disable=SC2086
before="$(cpu_of $backing)"
list() { local IFS=,; echo "$*"; }
taskset -c 1 "$harness" "$scenario" --url "$(list "${urls[@]}")" --app "$app" --secret "$secret" \
    --server-pid "$(list "${pids[@]}")" --quiet "$@" | tail -n 1
# shellcheck disable=SC2086
after="$(cpu_of $(server_pids))"
echo "{\"postgres_and_redis_cpu_s\": $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.3f", a - b }')}"
