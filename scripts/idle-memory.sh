#!/usr/bin/env bash
# Idle long connections: user-space memory per connection, and the CPU that server
# heartbeats on them cost. See docs/performance.md.
#
# 1. For keepwire serve, the C echo (bench/peers/c_echo.c) and the tokio example: start the
#    server (pinned to CPU 0 where taskset exists), read its RSS, open --conns connections
#    with bench/peers/idle_clients.py (one 64-byte exchange each, then idle; CPU 1), read its
#    RSS again: (after - before) / conns is the user-space RSS per idle connection (the
#    kernel's socket buffers are not in it).
# 2. keepwire serve --heartbeat interval=10s,timeout=5s,misses=3 with --conns idle clients
#    that answer each ping: the server's utime+stime over --window, as % of one core; the
#    same for the C echo with -ping-ms 10000 (pings sent and pongs read in a bare epoll
#    loop: the kernel's share, a floor no server goes under on the machine).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/server-lib.sh
source "$ROOT/scripts/server-lib.sh"
WORK=$ROOT/target/compare
CONNS=19000 WINDOW=40 BUILD=1
SERVERS=keepwire,direct,c,tokio
HEARTBEAT=interval=10s,timeout=5s,misses=3

usage() {
	cat <<EOF
usage: scripts/idle-memory.sh [options]
  --conns N        idle connections per server (default $CONNS; the fd limit is raised to
                   the hard limit, which must exceed N)
  --window SECS    heartbeat CPU window, seconds (default $WINDOW; 0 skips the measures)
  --servers LIST   of keepwire,direct,c,tokio (default: all; direct: keepwire serve --engine direct)
  --work DIR       build outputs and logs (default target/compare)
  --no-build       use target/release as built
EOF
}
die() {
	echo "idle-memory: $*" >&2
	exit 2
}
while (($#)); do
	case $1 in
	--conns | --window | --servers | --work) (($# >= 2)) || die "$1 needs a value" ;;
	esac
	case $1 in
	--conns) CONNS=$2; shift 2 ;;
	--window) WINDOW=$2; shift 2 ;;
	--servers) SERVERS=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
done
[[ $CONNS =~ ^[1-9][0-9]*$ ]] || die "--conns wants a positive integer"
[[ $WINDOW =~ ^[0-9]+$ ]] || die "--window wants whole seconds"
wants() { [[ ,$SERVERS, == *,$1,* ]]; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) > CONNS + 100)) || die "open files limit $(ulimit -n) is too low for $CONNS connections (raise the hard limit)"
command -v python3 >/dev/null || die "python3 not found"

mkdir -p "$WORK"
KEEPWIRE_BIN=${KEEPWIRE_BIN:-$ROOT/target/release/keepwire}
TOKIO_BIN=$ROOT/target/release/examples/tokio_echo
C_BIN=$WORK/c_echo
if ((BUILD)); then
	(cd "$ROOT" && cargo build --release -q -p keepwire-cli)
	if wants tokio; then (cd "$ROOT" && cargo build --release -q -p keepwire --example tokio_echo); fi
fi
if wants c && { [ ! -x "$C_BIN" ] || [ "$ROOT/bench/peers/c_echo.c" -nt "$C_BIN" ]; }; then
	cc -O2 -Wall -o "$C_BIN" "$ROOT/bench/peers/c_echo.c" -lpthread
fi

SRV_PIN=() CLI_PIN=()
if command -v taskset >/dev/null && (($(nproc) >= 2)); then
	SRV_PIN=(taskset -c 0) CLI_PIN=(taskset -c 1)
else
	echo "idle-memory: taskset missing or one CPU: unpinned" >&2
fi

HZ=$(getconf CLK_TCK)
SRV_PID='' TARGET='' CLIENT_PID=''
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() {
	local s f
	s=$(cat "/proc/$1/stat")
	read -r -a f <<<"${s##*) }"
	echo $((f[11] + f[12]))
}

start_server() { # argv...: sets SRV_PID and TARGET
	spawn_server "$WORK/idle-server.out" "$WORK/idle-server.err" "${SRV_PIN[@]}" "$@" ||
		die "$1 did not print 'listening on ADDR'"
}

stop_all() {
	if [ -n "$CLIENT_PID" ]; then
		exec {CLIENT_IN}>&- 2>/dev/null || true
		kill "$CLIENT_PID" 2>/dev/null || true
		wait "$CLIENT_PID" 2>/dev/null || true
		CLIENT_PID=''
	fi
	stop_server
}
trap stop_all EXIT

open_clients() { # opens CONNS idle connections to TARGET; they stay until stop_all
	local fifo=$WORK/idle-clients.in ready
	rm -f "$fifo"
	mkfifo "$fifo"
	: >"$WORK/idle-clients.out" # no "ready" left from the previous server
	"${CLI_PIN[@]}" python3 "$ROOT/bench/peers/idle_clients.py" "$TARGET" "$CONNS" <"$fifo" >"$WORK/idle-clients.out" &
	CLIENT_PID=$!
	exec {CLIENT_IN}>"$fifo" # held open: the clients stay until it closes
	for ((i = 0; i < 1200; i++)); do
		ready=$(cat "$WORK/idle-clients.out")
		[[ $ready == ready* ]] && return 0
		kill -0 "$CLIENT_PID" 2>/dev/null || die "idle clients failed against $TARGET"
		sleep 0.1
	done
	die "idle clients not connected after 120 s"
}

server_argv() {
	case $1 in
	keepwire) ARGV=("$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo
		--max-conns $((CONNS + 100)) --max-conns-per-ip 0) ;;
	direct) ARGV=("$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo
		--max-conns $((CONNS + 100)) --max-conns-per-ip 0 --engine direct) ;;
	c) ARGV=("$C_BIN" -listen 127.0.0.1:0) ;;
	tokio) ARGV=("$TOKIO_BIN" --listen 127.0.0.1:0) ;;
	esac
}

echo "user-space RSS per idle long connection, $CONNS connections (one 64-byte exchange each)"
printf '%-10s %10s %10s %12s\n' server before_kB after_kB bytes/conn
IFS=, read -r -a LIST <<<"$SERVERS"
for name in "${LIST[@]}"; do
	server_argv "$name"
	start_server "${ARGV[@]}"
	before=$(rss_kb "$SRV_PID")
	open_clients
	after=$(rss_kb "$SRV_PID")
	printf '%-10s %10d %10d %12.0f\n' "$name" "$before" "$after" "$(awk -v a="$after" -v b="$before" -v n="$CONNS" 'BEGIN { print (a - b) * 1024 / n }')"
	stop_all
done

# Server CPU over WINDOW with CONNS idle clients answering a ping every 10 s.
heartbeat_cpu() { # label argv...
	local label=$1 t0 t1
	shift
	start_server "$@"
	open_clients
	# One ping interval for the pings to spread out after the connect burst, then the window.
	sleep 10
	t0=$(cpu_ticks "$SRV_PID")
	sleep "$WINDOW"
	t1=$(cpu_ticks "$SRV_PID")
	awk -v l="$label" -v t=$((t1 - t0)) -v hz="$HZ" -v w="$WINDOW" -v n="$CONNS" 'BEGIN {
		printf "%-10s server CPU over %d s: %.2f%% of one core (%d ticks of 1/%d s; %.1f pings/s; %.1f us a ping)\n",
			l, w, 100 * t / hz / w, t, hz, n / 10, 1e6 * t / hz / (w * n / 10) }'
	stop_all
}

if ((WINDOW > 0)) && { wants keepwire || wants direct || wants c; }; then
	echo
	echo "heartbeats: $CONNS idle connections answering a ping every 10 s"
	echo "(keepwire serve --heartbeat $HEARTBEAT; c: the C echo's -ping-ms 10000, the floor: pings sent and pongs read, nothing else)"
	if wants keepwire; then
		heartbeat_cpu keepwire "$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo \
			--max-conns $((CONNS + 100)) --max-conns-per-ip 0 --heartbeat "$HEARTBEAT"
	fi
	if wants direct; then
		heartbeat_cpu direct "$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo \
			--max-conns $((CONNS + 100)) --max-conns-per-ip 0 --heartbeat "$HEARTBEAT" --engine direct
	fi
	if wants c; then heartbeat_cpu c "$C_BIN" -listen 127.0.0.1:0 -ping-ms 10000; fi
fi
