# Shared by scripts/compare-servers.sh, scripts/idle-memory.sh and the callgrind scripts:
# start a server that prints "listening on ADDR" as its first stdout line, in a process group
# of its own, and stop it; or wait for that line from a server started otherwise. Source it;
# it defines SRV_PID and TARGET.

SRV_PID=''
TARGET=''

# spawn_server OUT ERR ARGV...: runs ARGV with setsid (exec all the way down, so $! is the
# server itself, leading its own group), stdout to OUT, stderr to ERR; waits up to 10 s for
# its "listening on ADDR" line and sets TARGET. Returns 1 (server stopped) without it.
spawn_server() {
	local out=$1 err=$2
	shift 2
	: >"$out"
	(exec setsid "$@" >"$out" 2>"$err") &
	SRV_PID=$!
	TARGET=$(listening_addr "$out" "$SRV_PID" 10)
	if [ -z "$TARGET" ]; then
		stop_server
		return 1
	fi
}

# stop_server: SIGTERM to the server's group, SIGKILL after 5 s.
stop_server() {
	[ -n "$SRV_PID" ] || return 0
	kill -TERM -- "-$SRV_PID" 2>/dev/null || kill -TERM "$SRV_PID" 2>/dev/null || true
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$SRV_PID" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL -- "-$SRV_PID" 2>/dev/null || true
	wait "$SRV_PID" 2>/dev/null || true
	SRV_PID=''
}

# listening_addr OUT PID SECS: waits up to SECS seconds for "listening on ADDR" in OUT while
# process PID lives (a server under valgrind takes seconds to start), and prints ADDR; prints
# nothing if it never came.
listening_addr() {
	local out=$1 pid=$2 i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -q '^listening on ' "$out" 2>/dev/null && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	sed -n 's/^listening on //p' "$out" 2>/dev/null | head -n1
}
