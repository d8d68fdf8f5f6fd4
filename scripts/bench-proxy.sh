#!/usr/bin/env bash
# Short clients straight to a server, against the same clients through `keepwire proxy`
# with a 2-connection long upstream, in one run (release build). One row each: requests/s,
# p99, the connections the upstream server accepted (its Prometheus counter), and the
# TIME_WAIT sockets on the upstream server's port afterwards.
#
#   scripts/bench-proxy.sh                 # 5s, 32 clients, 64-byte bodies
#   DURATION=10s CONNECTIONS=64 scripts/bench-proxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
SIZE=${SIZE:-64}
FRAMING=len:ascii:4

cargo build --release -q -p keepwire-cli
BIN=$PWD/target/release/keepwire
TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Starts `keepwire ARGS` in the background; prints the address of its `listening on` line.
start() {
    local name=$1
    shift
    "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    PIDS+=($!)
    for _ in $(seq 200); do
        if grep -q '^listening on ' "$TMP/$name.out" 2>/dev/null; then
            sed -n 's/^listening on //p' "$TMP/$name.out"
            return
        fi
        sleep 0.05
    done
    echo "bench-proxy: $name did not start: $(cat "$TMP/$name.err")" >&2
    exit 1
}

# The metrics address a serve printed on stderr.
metrics_of() {
    for _ in $(seq 200); do
        local m
        m=$(sed -n 's|^keepwire: metrics on \(http://.*\)$|\1|p' "$TMP/$1.err")
        if [ -n "$m" ]; then
            echo "$m"
            return
        fi
        sleep 0.05
    done
    echo "bench-proxy: no metrics address from $1" >&2
    exit 1
}

# The upstream's accepted-connections counter.
accepted() {
    python3 - "$1" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(sys.argv[1], timeout=5).read().decode()
n = sum(float(l.split()[-1]) for l in text.splitlines()
        if l.startswith("keepwire_connections_accepted_total"))
print(int(n))
EOF
}

# TIME_WAIT sockets on a port (either end).
time_wait() {
    "$BIN" watch --port "$1" --once --json | python3 -c '
import json, sys
n = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    o = json.loads(line)
    rows = o if isinstance(o, list) else o.get("states", [o])
    for r in rows:
        if isinstance(r, dict) and r.get("state") == "TIME_WAIT":
            n += int(r.get("count", 0))
print(n)'
}

# One bench row against $1 (the target), the upstream's metrics $2 and port $3.
row() {
    local label=$1 target=$2 metrics=$3 port=$4 json
    json=$("$BIN" bench --target "$target" --framing "$FRAMING" --modes short \
        --connections "$CONNECTIONS" --duration "$DURATION" --size "$SIZE" --json)
    # Each upstream serves only its row: its total is what the row cost it (the proxy's
    # pool connections included, opened at its start).
    local seen
    seen=$(accepted "$metrics")
    local tw
    tw=$(time_wait "$port")
    python3 -c '
import json, sys
label, seen, tw = sys.argv[1], sys.argv[2], sys.argv[3]
r = json.loads(sys.stdin.read())[0]
rps, p99, errors = r["rps"], r["p99_us"], r["errors"]
print(f"{label:<22} {rps:>10.0f} {p99:>9} {errors:>7} {seen:>18} {tw:>18}")
' "$label" "$seen" "$tw" <<<"$json"
}

DIRECT=$(start direct serve --listen 127.0.0.1:0 --framing "$FRAMING" --metrics 127.0.0.1:0)
DIRECT_M=$(metrics_of direct)/metrics
UP=$(start upstream serve --listen 127.0.0.1:0 --framing "$FRAMING" --metrics 127.0.0.1:0)
UP_M=$(metrics_of upstream)/metrics
PROXY=$(start proxy proxy --listen 127.0.0.1:0 --framing "$FRAMING" --client-mode short \
    --upstream "$UP" --pool 2 --max-conns-per-ip 0)

echo "keepwire bench --modes short --connections $CONNECTIONS --duration $DURATION --size $SIZE ($(nproc) cores)"
printf '%-22s %10s %9s %7s %18s %18s\n' path 'req/s' 'p99 us' errors 'upstream accepted' 'upstream TIME_WAIT'
row "direct (short)" "$DIRECT" "$DIRECT_M" "${DIRECT##*:}"
row "proxy (2 long up)" "$PROXY" "$UP_M" "${UP##*:}"
