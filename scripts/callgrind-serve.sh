#!/usr/bin/env bash
# User-space instructions per request of `keepwire serve`, counted by callgrind: deterministic
# where scripts/compare-servers.sh's CPU times drown in a shared machine's noise.
#
# Starts BIN (default target/release/keepwire) under valgrind --tool=callgrind, pinned to CPU 0
# where taskset exists (a current-thread runtime, as the compare script runs it), drives it
# with `keepwire bench --modes MODE` (default short, 64 B, 16 connections, --duration) on CPU
# 1, stops it with SIGTERM, and prints the whole process's instructions per request (in short
# mode, per connection) and those of the accept loop's task (`cmd::serve::serve`, which
# excludes the connections' own tasks). The figures include start-up (a few million
# instructions, spread over the requests).
#
# usage: scripts/callgrind-serve.sh [--duration DUR] [--mode long|short] [--size N]
#                                   [--connections N] [BIN]            (needs valgrind)
# ENGINE_ARGS="--engine direct" measures the direct engine.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/server-lib.sh
source "$ROOT/scripts/server-lib.sh"
DUR=5s MODE=short SIZE=64 NCONN=16
while (($# >= 2)); do
	case $1 in
	--duration) DUR=$2; shift 2 ;;
	--mode) MODE=$2; shift 2 ;;
	--size) SIZE=$2; shift 2 ;;
	--connections) NCONN=$2; shift 2 ;;
	*) break ;;
	esac
done
BIN=${1:-$ROOT/target/release/keepwire}
LOAD=$ROOT/target/release/keepwire
command -v valgrind >/dev/null || { echo "callgrind-serve: valgrind not found" >&2; exit 2; }
[ -x "$BIN" ] && [ -x "$LOAD" ] || { echo "callgrind-serve: build first: cargo build --release -p keepwire-cli" >&2; exit 2; }
PIN_SRV=() PIN_LOAD=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN_SRV=(taskset -c 0) PIN_LOAD=(taskset -c 1); fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
setsid "${PIN_SRV[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" serve \
	--listen 127.0.0.1:0 --framing len:be:4 --reply echo --heartbeat off --max-conns-per-ip 4000 ${ENGINE_ARGS:-} \
	>"$WORK/srv.out" 2>"$WORK/srv.err" &
PID=$!
ADDR=$(listening_addr "$WORK/srv.out" "$PID" 20)
[ -n "$ADDR" ] || { echo "callgrind-serve: the server did not start: $(head -c 300 "$WORK/srv.err")" >&2; exit 1; }
JSON=$("${PIN_LOAD[@]}" "$LOAD" bench --target "$ADDR" --framing len:be:4 --modes "$MODE" \
	--size "$SIZE" --connections "$NCONN" --duration "$DUR" --json 2>/dev/null)
kill -TERM "$PID"
wait "$PID" || true
CONNS=$(grep -o '"requests":[0-9]*' <<<"$JSON" | cut -d: -f2)
[ "${CONNS:-0}" -gt 0 ] || { echo "callgrind-serve: the bench made no request: $JSON" >&2; exit 1; }
callgrind_annotate --inclusive=yes --threshold=100 "$WORK/cg.out" 2>/dev/null >"$WORK/incl.txt"
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$WORK/incl.txt")
accept=$(awk '/cmd\/serve.rs:keepwire::cmd::serve::serve::\{\{closure\}\}( |$)/ {gsub(",", "", $1); if ($1 + 0 > m) m = $1 + 0} END {print m + 0}' "$WORK/incl.txt")
printf 'requests %d (%s, %d B, %d connections)\ninstructions/request %d\naccept task instructions/request %d\n' \
	"$CONNS" "$MODE" "$SIZE" "$NCONN" "$((total / CONNS))" "$((${accept:-0} / CONNS))"
