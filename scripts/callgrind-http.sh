#!/usr/bin/env bash
# User-space instructions per request of `keepwire serve --framing http`, counted by
# callgrind under ApacheBench: deterministic where CPU times drown in a shared machine's noise.
#
# Starts BIN (default target/release/keepwire) as `serve --framing http --reply text:hello
# --idle-timeout 65s` under valgrind --tool=callgrind, pinned to CPU 1 where taskset exists,
# drives it with `ab -c C -n N` (with -k: HTTP/1.0 keep-alive) pinned to CPU 0, stops it with
# SIGTERM and prints the whole process's instructions (PROGRAM TOTALS) divided by the
# requests ab completed, start-up included. --out FILE keeps callgrind's output (for
# callgrind_annotate --tree=caller, e.g. to count httparse calls per request).
#
# usage: scripts/callgrind-http.sh [-k] [-n N] [-c C] [--out FILE] [BIN]  (needs valgrind, ab)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/server-lib.sh
source "$ROOT/scripts/server-lib.sh"
KEEP=() N=5000 C=32 KEEP_OUT=
while (($# >= 1)); do
	case $1 in
	-k) KEEP=(-k); shift ;;
	-n) N=$2; shift 2 ;;
	-c) C=$2; shift 2 ;;
	--out) KEEP_OUT=$2; shift 2 ;;
	*) break ;;
	esac
done
BIN=${1:-$ROOT/target/release/keepwire}
for tool in valgrind ab callgrind_annotate; do
	command -v "$tool" >/dev/null || { echo "callgrind-http: $tool not found" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "callgrind-http: build first: cargo build --release -p keepwire-cli" >&2; exit 2; }
PIN_SRV=() PIN_LOAD=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then PIN_SRV=(taskset -c 1) PIN_LOAD=(taskset -c 0); fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
setsid "${PIN_SRV[@]}" valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$BIN" serve \
	--listen 127.0.0.1:0 --framing http --reply text:hello --idle-timeout 65s \
	>"$WORK/srv.out" 2>"$WORK/srv.err" &
PID=$!
ADDR=$(listening_addr "$WORK/srv.out" "$PID" 30)
[ -n "$ADDR" ] || { echo "callgrind-http: the server did not start: $(head -c 300 "$WORK/srv.err")" >&2; exit 1; }
"${PIN_LOAD[@]}" ab "${KEEP[@]}" -q -c "$C" -n "$N" "http://$ADDR/" >"$WORK/ab.out" 2>&1 || true
kill -TERM "$PID"
wait "$PID" || true
DONE=$(awk '/^Complete requests:/ {print $3}' "$WORK/ab.out")
FAILED=$(awk '/^Failed requests:/ {print $3}' "$WORK/ab.out")
[ "${DONE:-0}" -gt 0 ] || { echo "callgrind-http: ab completed no request: $(head -c 500 "$WORK/ab.out")" >&2; exit 1; }
callgrind_annotate --threshold=100 "$WORK/cg.out" 2>/dev/null >"$WORK/excl.txt"
total=$(awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}' "$WORK/excl.txt")
printf 'requests %d (ab %s-c %d -n %d, %s failed)\ninstructions/request %d\n' \
	"$DONE" "${KEEP[*]:+-k }" "$C" "$N" "${FAILED:-?}" "$((total / DONE))"
if [ -n "$KEEP_OUT" ]; then cp "$WORK/cg.out" "$KEEP_OUT"; fi
