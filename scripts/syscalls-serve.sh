#!/usr/bin/env bash
# System calls per request of an echo server under `keepwire bench`, counted by perf's
# syscall tracepoints (no ptrace: strace slows the server enough to change what it does,
# e.g. a request that is always already there when it reads).
#
# Starts the server pinned to CPU 0 where taskset exists (keepwire: `keepwire serve
# --framing len:be:4 --reply echo --heartbeat off`, or BIN's; c: bench/peers/c_echo.c built
# into target/compare), warms it up for 1 s, then counts its system calls with `perf stat -e
# syscalls:sys_enter_*` over a --duration bench (CPU 1), and prints each per request (in
# short mode, per connection).
#
# usage: scripts/syscalls-serve.sh [--mode long|short] [--size N] [--connections N]
#                                  [--duration DUR] [c | keepwire [BIN]]   (needs perf, root)
# ENGINE_ARGS="--engine direct" measures keepwire's direct engine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODE=short SIZE=64 NCONN=16 DUR=3s
while (($# >= 2)); do
	case $1 in
	--mode) MODE=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--connections) NCONN=$2; shift 2 ;;
	--duration) DUR=$2; shift 2 ;;
	*) break ;;
	esac
done
WHICH=${1:-keepwire}
LOAD=$ROOT/target/release/keepwire
command -v perf >/dev/null || { echo "syscalls-serve: perf not found" >&2; exit 2; }
[ -x "$LOAD" ] || { echo "syscalls-serve: build first: cargo build --release -p keepwire-cli" >&2; exit 2; }
case $WHICH in
c)
	C_BIN=$ROOT/target/compare/c_echo
	if [ ! -x "$C_BIN" ] || [ "$ROOT/bench/peers/c_echo.c" -nt "$C_BIN" ]; then
		mkdir -p "$ROOT/target/compare"
		cc -O2 -Wall -o "$C_BIN" "$ROOT/bench/peers/c_echo.c" -lpthread
	fi
	ARGV=("$C_BIN" -listen 127.0.0.1:0)
	;;
keepwire)
	ARGV=("${2:-$LOAD}" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo --heartbeat off
		--max-conns-per-ip 4000 ${ENGINE_ARGS:-})
	;;
*) echo "syscalls-serve: the server is c or keepwire [BIN], not $WHICH" >&2; exit 2 ;;
esac
PIN_SRV=() PIN_LOAD=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN_SRV=(taskset -c 0) PIN_LOAD=(taskset -c 1); fi

WORK=$(mktemp -d)
PID=''
cleanup() {
	if [ -n "$PID" ]; then
		kill -TERM "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
setsid "${PIN_SRV[@]}" "${ARGV[@]}" >"$WORK/srv.out" 2>"$WORK/srv.err" &
PID=$!
for _ in $(seq 100); do
	grep -q '^listening on ' "$WORK/srv.out" 2>/dev/null && break
	sleep 0.1
done
ADDR=$(sed -n 's/^listening on //p' "$WORK/srv.out" | head -n1)
[ -n "$ADDR" ] || { echo "syscalls-serve: the server did not start: $(head -c 300 "$WORK/srv.err")" >&2; exit 1; }
bench() {
	"${PIN_LOAD[@]}" "$LOAD" bench --target "$ADDR" --framing len:be:4 --modes "$MODE" \
		--size "$SIZE" --connections "$NCONN" --duration "$1" --json 2>/dev/null
}
bench 1s >/dev/null
CALLS=(accept4 recvfrom sendto epoll_wait epoll_ctl write close setsockopt getsockopt)
EVENTS=$(printf 'syscalls:sys_enter_%s,' "${CALLS[@]}")
perf stat -x, -e "${EVENTS%,}" -p "$PID" -o "$WORK/perf.txt" &
SP=$!
sleep 0.3
JSON=$(bench "$DUR")
kill -INT "$SP"
wait "$SP" 2>/dev/null || true
REQ=$(grep -o '"requests":[0-9]*' <<<"$JSON" | cut -d: -f2)
[ "${REQ:-0}" -gt 0 ] || { echo "syscalls-serve: the bench made no request: $JSON" >&2; exit 1; }
printf '%s: %d requests (%s, %d B, %d connections); system calls per request:\n' "$WHICH" "$REQ" "$MODE" "$SIZE" "$NCONN"
awk -F, -v r="$REQ" '/syscalls:sys_enter_/ {
	split($3, a, "sys_enter_"); t += $1; printf "  %-11s %6.3f\n", a[2], $1 / r }
	END { printf "  %-11s %6.3f\n", "all", t / r }' "$WORK/perf.txt"
