#!/usr/bin/env bash
# Short clients straight to a server, against the same clients through `keepwire proxy`
# with a 2-connection long upstream, in one run (release build). One row each: requests/s,
# p50, p99, the connections the upstream server accepted (its Prometheus counter), and the
# TIME_WAIT sockets on the upstream server's port afterwards.
#
#   scripts/bench-proxy.sh                 # 5s, 32 clients, 64-byte bodies, all on loopback
#   DURATION=10s CONNECTIONS=64 scripts/bench-proxy.sh
#   scripts/bench-proxy.sh --rtt 10ms      # the upstream servers 10ms away (root)
#
# --rtt DUR puts the upstream servers in a network namespace this script creates, behind a
# veth pair (198.18.0.1 here, 198.18.0.2 there) whose host end delays every packet by DUR
# (tc netem): the partner is far, the proxy is near its clients, as deployed. Direct short
# clients then pay a handshake round trip per request; the proxy's long upstream does not.
# Rows: direct, proxy with a 2-connection pool (one request at a time on each), proxy with 2
# multiplexed connections (--correlate 0:8, the bench's request id). TIME_WAIT is counted on
# both hosts: the upstream's namespace, and this host's sockets to the upstream port. Needs
# root, ip and tc; without them it says why and exits 0. The namespace is deleted on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RTT=
while [ $# -gt 0 ]; do
    case $1 in
    --rtt) RTT=${2:?--rtt needs a duration, e.g. 10ms}; shift 2 ;;
    --rtt=*) RTT=${1#--rtt=}; shift ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "bench-proxy: unknown argument $1 (expected --rtt DUR)" >&2; exit 2 ;;
    esac
done

DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
SIZE=${SIZE:-64}
FRAMING=len:ascii:4

cargo build --release -q -p keepwire-cli
BIN=$PWD/target/release/keepwire
TMP=$(mktemp -d)
NS=
cleanup() {
    # `start` runs in a command substitution (a subshell): its children's pids are in a file.
    if [ -s "$TMP/pids" ]; then
        while read -r p; do kill "$p" 2>/dev/null || true; done <"$TMP/pids"
        while read -r p; do
            for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
        done <"$TMP/pids"
    fi
    # Deleting the namespace deletes its veth end, and with it the pair.
    if [ -n "$NS" ]; then ip netns del "$NS" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts `keepwire ARGS` in the background (in the upstream's namespace when $IN is set);
# prints the address of its `listening on` line.
IN=()
start() {
    local name=$1
    shift
    "${IN[@]}" "$BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
    echo $! >>"$TMP/pids"
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

# TIME_WAIT sockets on a port (either end), in the namespace of the command prefix $2..
time_wait() {
    local port=$1
    shift
    "$@" "$BIN" watch --port "$port" --once --json | python3 -c '
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

# One bench row against $2 (the target), the upstream's metrics $3 and port $4.
row() {
    local label=$1 target=$2 metrics=$3 port=$4 json
    json=$("$BIN" bench --target "$target" --framing "$FRAMING" --modes short \
        --connections "$CONNECTIONS" --duration "$DURATION" --size "$SIZE" --json)
    # Each upstream serves only its row: its total is what the row cost it (the proxy's
    # pool connections included, opened at its start).
    local seen tw_up tw_here
    seen=$(accepted "$metrics")
    tw_up=$(time_wait "$port" "${IN[@]}")
    tw_here=-
    if [ ${#IN[@]} -gt 0 ]; then tw_here=$(time_wait "$port"); fi
    python3 -c '
import json, sys
label, seen, tw_up, tw_here = sys.argv[1:5]
r = json.loads(sys.stdin.read())[0]
rps, p50, p99, errors = r["rps"], r["p50_us"], r["p99_us"], r["errors"]
print(f"{label:<20} {rps:>8.0f} {p50:>8} {p99:>8} {errors:>6} {seen:>9} {tw_up:>9} {tw_here:>10}")
' "$label" "$seen" "$tw_up" "$tw_here" <<<"$json"
}

header() {
    echo "keepwire bench --modes short --connections $CONNECTIONS --duration $DURATION --size $SIZE ($(nproc) cores)$1"
    printf '%-20s %8s %8s %8s %6s %9s %9s %10s\n' path 'req/s' 'p50 us' 'p99 us' errors \
        'up conns' 'TW (up)' 'TW (here)'
}

# The upstream's namespace, 198.18.0.2, $RTT away; sets IN and HOST. A veth pair with tc
# netem on the host end; on a kernel without netem, scripts/delay_link.py (two TUN devices
# forwarded in user space, the same delay).
far_namespace() {
    local why=
    [ "$(id -u)" = 0 ] || why="not root"
    command -v ip >/dev/null && command -v tc >/dev/null || why="ip or tc missing (iproute2)"
    if [ -n "$why" ]; then
        echo "bench-proxy: --rtt $RTT skipped: $why (it creates a network namespace and a delayed link)" >&2
        exit 0
    fi
    local ms
    ms=$(python3 -c '
import re, sys
m = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s)", sys.argv[1])
if not m:
    sys.exit("bench-proxy: --rtt " + sys.argv[1] + ": expected a duration like 10ms, 500us, 1s")
print(float(m[1]) * {"us": 0.001, "ms": 1, "s": 1000}[m[2]])' "$RTT") || exit 2
    NS=kwbench-$$
    local a=kwb$$a b=kwb$$b
    ip netns add "$NS"
    ip -n "$NS" link set lo up
    ip link add "$a" type veth peer name "$b"
    # Every packet towards the partner waits RTT; replies come straight back: a connect and
    # each request/reply exchange cost one RTT each, as with RTT/2 each way.
    if tc qdisc add dev "$a" root netem delay "$RTT" limit 100000 2>/dev/null; then
        LINK="veth + tc netem delay $RTT"
        ip link set "$b" netns "$NS"
        ip addr add 198.18.0.1/30 dev "$a"
        ip link set "$a" up
        ip -n "$NS" addr add 198.18.0.2/30 dev "$b"
        ip -n "$NS" link set "$b" up
    else
        ip link del "$a"
        LINK="tun + scripts/delay_link.py ${ms}ms (this kernel has no netem)"
        python3 scripts/delay_link.py "$NS" "$a" "$b" "$ms" >"$TMP/link.out" 2>"$TMP/link.err" &
        echo $! >>"$TMP/pids"
        for _ in $(seq 100); do grep -q ready "$TMP/link.out" 2>/dev/null && break; sleep 0.05; done
        if ! grep -q ready "$TMP/link.out"; then
            echo "bench-proxy: --rtt $RTT skipped: no delayed link: $(cat "$TMP/link.err")" >&2
            exit 0
        fi
    fi
    IN=(ip netns exec "$NS")
    HOST=198.18.0.2
}

HOST=127.0.0.1
if [ -n "$RTT" ]; then far_namespace; fi

# Each row gets its own upstream server, so that its counters are the row's alone.
upstream() {
    start "$1" serve --listen "$HOST:0" --framing "$FRAMING" --metrics "$HOST:0" \
        --max-conns-per-ip 0
}
DIRECT=$(upstream direct)
DIRECT_M=$(metrics_of direct)/metrics
UP=$(upstream upstream)
UP_M=$(metrics_of upstream)/metrics
FAR=${IN[*]}
IN=()
PROXY=$(start proxy proxy --listen 127.0.0.1:0 --framing "$FRAMING" --client-mode short \
    --upstream "$UP" --pool 2 --max-conns-per-ip 0)
if [ -n "$RTT" ]; then
    IN=($FAR)
    UP_MUX=$(upstream upstream-mux)
    UP_MUX_M=$(metrics_of upstream-mux)/metrics
    IN=()
    PROXY_MUX=$(start proxy-mux proxy --listen 127.0.0.1:0 --framing "$FRAMING" \
        --client-mode short --upstream "$UP_MUX" --pool 2 --correlate 0:8 \
        --max-conns-per-ip 0)
fi
IN=($FAR)

if [ -n "$RTT" ]; then
    header ", upstream $RTT away: $LINK"
else
    header ""
fi
row "direct (short)" "$DIRECT" "$DIRECT_M" "${DIRECT##*:}"
row "proxy (2 long up)" "$PROXY" "$UP_M" "${UP##*:}"
if [ -n "$RTT" ]; then
    row "proxy (2 mux up)" "$PROXY_MUX" "$UP_MUX_M" "${UP_MUX##*:}"
fi
