#!/usr/bin/env bash
# User-space instructions per heartbeat (a ping sent and its pong read) of `keepwire serve`,
# counted by callgrind: the part of a ping's cost that the server's code controls (the rest
# is the kernel's; scripts/idle-memory.sh measures the whole).
#
# Starts BIN (default target/release/keepwire) under valgrind --tool=callgrind pinned to CPU 0
# where taskset exists, with `--heartbeat interval=1s,timeout=5s,misses=3`, opens CONNS idle
# connections with bench/peers/idle_clients.py (CPU 1; they answer every ping), lets a few
# rounds of pings go by, then counts over WINDOW seconds (between `callgrind_control -z` and
# `-d`) and prints instructions per ping (CONNS pings a second).
#
# usage: scripts/callgrind-heartbeat.sh [--conns N] [--window SECS] [BIN]   (needs valgrind, python3)
# CALLGRIND_KEEP=FILE keeps the counts (for callgrind_annotate); ENGINE_ARGS="--engine direct"
# measures the direct engine.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/server-lib.sh
source "$ROOT/scripts/server-lib.sh"
CONNS=2000 WINDOW=10
while (($# >= 2)); do
	case $1 in
	--conns) CONNS=$2; shift 2 ;;
	--window) WINDOW=$2; shift 2 ;;
	*) break ;;
	esac
done
BIN=${1:-$ROOT/target/release/keepwire}
for t in valgrind callgrind_control callgrind_annotate python3; do
	command -v "$t" >/dev/null || { echo "callgrind-heartbeat: $t not found" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "callgrind-heartbeat: no $BIN: cargo build --release -p keepwire-cli" >&2; exit 2; }
PIN_SRV=() PIN_CLI=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN_SRV=(taskset -c 0) PIN_CLI=(taskset -c 1); fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WORK=$(mktemp -d)
PID='' CLI=''
cleanup() {
	exec 3>&- 2>/dev/null || true
	[ -n "$CLI" ] && kill "$CLI" 2>/dev/null
	if [ -n "$PID" ]; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
"${PIN_SRV[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" serve \
	--listen 127.0.0.1:0 --framing len:be:4 --reply echo --heartbeat interval=1s,timeout=5s,misses=3 \
	--max-conns $((CONNS + 100)) --max-conns-per-ip 0 ${ENGINE_ARGS:-} >"$WORK/srv.out" 2>"$WORK/srv.err" &
PID=$!
ADDR=$(listening_addr "$WORK/srv.out" "$PID" 30)
[ -n "$ADDR" ] || { echo "callgrind-heartbeat: the server did not start: $(head -c 300 "$WORK/srv.err")" >&2; exit 1; }
mkfifo "$WORK/hold"
"${PIN_CLI[@]}" python3 "$ROOT/bench/peers/idle_clients.py" "$ADDR" "$CONNS" <"$WORK/hold" >"$WORK/cli.out" &
CLI=$!
exec 3>"$WORK/hold"
for _ in $(seq 240); do
	grep -q '^ready' "$WORK/cli.out" 2>/dev/null && break
	kill -0 "$CLI" 2>/dev/null || { echo "callgrind-heartbeat: the idle clients failed" >&2; exit 1; }
	sleep 0.5
done
grep -q '^ready' "$WORK/cli.out" || { echo "callgrind-heartbeat: clients not connected in 120 s" >&2; exit 1; }
sleep 3
callgrind_control -z "$PID" >/dev/null 2>&1
sleep "$WINDOW"
callgrind_control -d "$PID" >/dev/null 2>&1
DUMP=$(ls "$WORK"/cg.out.* | head -n1)
[ -z "${CALLGRIND_KEEP:-}" ] || cp "$DUMP" "$CALLGRIND_KEEP"
total=$(callgrind_annotate "$DUMP" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
printf 'connections %d, pinged every 1 s, counted over %d s\ninstructions/ping %d\n' \
	"$CONNS" "$WINDOW" "$((total / (CONNS * WINDOW)))"
