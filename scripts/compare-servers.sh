#!/usr/bin/env bash
# Compares echo servers under `keepwire bench --target`: the bare C epoll echo
# (bench/peers/c_echo.c, the floor), a tokio-util LengthDelimitedCodec echo
# (crates/keepwire/examples/tokio_echo.rs), `keepwire serve`, and any server named with
# --server. Every server speaks len:be:4 and echoes each frame. See docs/performance.md.
#
# Per run: start every server (pinned to CPU 0 when taskset exists and there are 2 CPUs; an
# idle server uses no CPU), read `listening on ADDR` from each one's first stdout line, then
# per case (mode, body size, connections) and per server in turn a warm-up bench, then a
# measured bench pinned to CPU 1, with the server's utime+stime read from /proc/PID/stat
# before and after. The servers take turns case by case, the first one rotating from case to
# case and run to run, so the figures a ratio divides were measured seconds apart, not
# minutes (a shared machine's speed drifts). One table per run; with --runs N > 1 also the
# median over runs of each row's ratio to the C server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/server-lib.sh
source "$ROOT/scripts/server-lib.sh"
CALLER_DIR=$PWD
WORK=$ROOT/target/compare
DUR=3s WARMUP=1s RUNS=1 BUILD=1
CASES=long:64:32,long:64:1000,long:4096:32,long:4096:1000,short:64:16,short:4096:16
SERVERS=c,tokio,keepwire,direct
ORDER=case
KEEPWIRE_BIN='' TOKIO_BIN='' C_BIN=''
NAMES=()
declare -A CMD=()

usage() {
	cat <<EOF
usage: scripts/compare-servers.sh [options]
  --server NAME='CMD'  also measure CMD (repeatable); it runs with bash from the current
                       directory and must print 'listening on ADDR' as its first stdout line
  --servers LIST       built-in servers to run, of c,tokio,keepwire,direct (keepwire serve
                       --engine direct), or none (default: all)
  --cases LIST         MODE:SIZE:CONNS,... (default: $CASES)
  --duration DUR       each measured bench (default $DUR)
  --warmup DUR         a bench before each measured one, 0 for none (default $WARMUP)
  --runs N             repeat everything N times; N > 1 adds the median ratios to c (default 1)
  --order case|server  case: the servers take turns within each case (default); server:
                       every case of one server, then the next server's (before 2026-12-02)
  --work DIR           build outputs, logs and results (default target/compare)
  --no-build           use what is built (target/release) or given below
  --keepwire BIN       the keepwire binary (default target/release/keepwire)
  --tokio BIN          the tokio example (default target/release/examples/tokio_echo)
  --c-echo BIN         the C echo (default: compiled with cc -O2 into --work)
EOF
}
die() {
	echo "compare-servers: $*" >&2
	exit 2
}

while (($#)); do
	case $1 in
	--server | --servers | --cases | --duration | --warmup | --runs | --order | --work | --keepwire | --tokio | --c-echo)
		(($# >= 2)) || die "$1 needs a value" ;;
	esac
	case $1 in
	--server)
		[[ $2 =~ ^([A-Za-z0-9_.-]+)=(.+)$ ]] || die "--server wants NAME='CMD', got: $2"
		name=${BASH_REMATCH[1]}
		[[ ,c,tokio,keepwire,direct, != *,$name,* && -z ${CMD[$name]:-} ]] || die "--server name '$name' is taken"
		NAMES+=("$name")
		CMD[$name]=${BASH_REMATCH[2]}
		shift 2
		;;
	--servers) SERVERS=$2; shift 2 ;;
	--cases) CASES=$2; shift 2 ;;
	--duration) DUR=$2; shift 2 ;;
	--warmup) WARMUP=$2; shift 2 ;;
	--runs) RUNS=$2; shift 2 ;;
	--order) ORDER=$2; shift 2 ;;
	--work) WORK=$2; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--keepwire) KEEPWIRE_BIN=$2; shift 2 ;;
	--tokio) TOKIO_BIN=$2; shift 2 ;;
	--c-echo) C_BIN=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown option: $1" ;;
	esac
done
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs wants a positive integer, got: $RUNS"
[[ $ORDER == case || $ORDER == server ]] || die "--order wants case or server, got: $ORDER"
[ "$SERVERS" = none ] && SERVERS=
IFS=, read -r -a BUILTIN <<<"$SERVERS"
for s in "${BUILTIN[@]}"; do [[ ,c,tokio,keepwire,direct, == *,$s,* ]] || die "unknown server '$s' (built in: c,tokio,keepwire,direct)"; done
IFS=, read -r -a CASE_LIST <<<"$CASES"
for c in "${CASE_LIST[@]}"; do
	[[ $c =~ ^(long|short):[0-9]+:[1-9][0-9]*$ ]] || die "--cases: '$c' is not MODE:SIZE:CONNS (mode long or short)"
done
ALL=("${BUILTIN[@]}" "${NAMES[@]}")
((${#ALL[@]})) || die "no server to measure"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

# ---- build ----------------------------------------------------------------------------
wants() { [[ ,$SERVERS, == *,$1,* ]]; }
KEEPWIRE_BIN=${KEEPWIRE_BIN:-$ROOT/target/release/keepwire}
TOKIO_BIN=${TOKIO_BIN:-$ROOT/target/release/examples/tokio_echo}
if ((BUILD)); then
	(cd "$ROOT" && cargo build --release -q -p keepwire-cli)
	if wants tokio; then (cd "$ROOT" && cargo build --release -q -p keepwire --example tokio_echo); fi
fi
if [ -z "$C_BIN" ] && wants c; then
	C_BIN=$WORK/c_echo
	src=$ROOT/bench/peers/c_echo.c
	if [ ! -x "$C_BIN" ] || [ "$src" -nt "$C_BIN" ]; then
		command -v cc >/dev/null || die "cc not found: install gcc, or leave c out of --servers"
		cc -O2 -Wall -o "$C_BIN" "$src" -lpthread
	fi
fi
[ -x "$KEEPWIRE_BIN" ] || die "no $KEEPWIRE_BIN: run without --no-build, or give --keepwire"
if wants tokio; then [ -x "$TOKIO_BIN" ] || die "no $TOKIO_BIN: run without --no-build, or give --tokio"; fi

# ---- pinning ----------------------------------------------------------------------------
SRV_PIN=() LOAD_PIN=()
if ! command -v taskset >/dev/null; then
	echo "compare-servers: taskset not found: server and load run unpinned" >&2
elif (($(nproc) < 2)); then
	echo "compare-servers: fewer than 2 CPUs: server and load run unpinned" >&2
else
	SRV_PIN=(taskset -c 0) LOAD_PIN=(taskset -c 1)
	echo "pinned: server on CPU 0, keepwire bench on CPU 1"
fi

# ---- server control ---------------------------------------------------------------------
HZ=$(getconf CLK_TCK)
STAMP=$(date +%Y%m%d-%H%M%S)
LOGS=$WORK/$STAMP
mkdir -p "$LOGS"
RESULTS=$LOGS/results.tsv
SRV_PID='' TARGET=''

cpu_ticks() { # pid -> "utime stime" of every thread, in clock ticks
	local s f
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0 0; return; }
	read -r -a f <<<"${s##*) }"
	echo "${f[11]} ${f[12]}"
}
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

server_cmd() { # name -> the argv in SERVER_ARGV
	case $1 in
	c) SERVER_ARGV=("$C_BIN" -listen 127.0.0.1:0) ;;
	tokio) SERVER_ARGV=("$TOKIO_BIN" --listen 127.0.0.1:0) ;;
	# --heartbeat off: by default an empty frame is keepwire's heartbeat (answered at most
	# once per 50 ms), while the peers echo it as data; off, it is plain data here too.
	keepwire) SERVER_ARGV=("$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo --heartbeat off --max-conns-per-ip 4000) ;;
	direct) SERVER_ARGV=("$KEEPWIRE_BIN" serve --listen 127.0.0.1:0 --framing len:be:4 --reply echo --heartbeat off --max-conns-per-ip 4000 --engine direct) ;;
	*) SERVER_ARGV=(bash -c "${CMD[$1]}") ;; # bash execs a simple command
	esac
}

declare -A PIDS=() TARGETS=()
start_server() { # name: records its pid and address in PIDS and TARGETS
	local name=$1
	server_cmd "$name"
	spawn_server "$LOGS/$name.out" "$LOGS/$name.err" \
		bash -c 'cd "$1" && shift && exec "$@"' _ "$CALLER_DIR" "${SRV_PIN[@]}" "${SERVER_ARGV[@]}" ||
		die "$name did not print 'listening on ADDR' (stderr: $(head -c 300 "$LOGS/$name.err"))"
	PIDS[$name]=$SRV_PID TARGETS[$name]=$TARGET
	SRV_PID=''
}
stop_servers() { # every server started
	local name
	for name in "${!PIDS[@]}"; do
		SRV_PID=${PIDS[$name]}
		stop_server
		unset "PIDS[$name]"
	done
}

trap stop_servers EXIT
trap 'exit 130' INT TERM

json_num() { # key json -> the number after "key":
	local v
	v=$(grep -o "\"$1\":[0-9.]*" <<<"$2" | head -n1)
	echo "${v#*:}"
}

bench() { # target mode size conns duration -> the JSON of keepwire bench
	"${LOAD_PIN[@]}" "$KEEPWIRE_BIN" bench --target "$1" --framing len:be:4 \
		--modes "$2" --size "$3" --connections "$4" --duration "$5" --json
}

# ---- one case, one server, one run ------------------------------------------------------
measure() { # run name mode size conns -> one row appended to RESULTS
	local run=$1 name=$2 mode=$3 size=$4 conns=$5 out u0 s0 u1 s1 req rps p99 errs
	local pid=${PIDS[$name]} target=${TARGETS[$name]}
	if [ "$WARMUP" != 0 ]; then bench "$target" "$mode" "$size" "$conns" "$WARMUP" >/dev/null 2>&1 || true; fi
	read -r u0 s0 <<<"$(cpu_ticks "$pid")"
	out=$(bench "$target" "$mode" "$size" "$conns" "$DUR" 2>"$LOGS/bench.err") || {
		echo "compare-servers: $name $mode $size $conns: bench failed: $(head -c 300 "$LOGS/bench.err")" >&2
		out='{}'
	}
	read -r u1 s1 <<<"$(cpu_ticks "$pid")"
	req=$(json_num requests "$out") rps=$(json_num rps "$out") p99=$(json_num p99_us "$out")
	errs=$(json_num errors "$out")
	# Columns: run server mode size conns requests rps p99 errors ticks peak_rss_kB
	# user_ticks sys_ticks.
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$name" "$mode" "$size" \
		"$conns" "${req:-0}" "${rps:-0}" "${p99:-0}" "${errs:-0}" "$((u1 + s1 - u0 - s0))" \
		"$(peak_rss_kb "$pid")" "$((u1 - u0))" "$((s1 - s0))" >>"$RESULTS"
}

# The table of one run from RESULTS: CPU % over the measured window (ticks / duration) and
# CPU µs per request (ticks / requests).
table() { # run
	local secs
	secs=$(awk -v d="$DUR" 'BEGIN {
		if (d ~ /ms$/) print substr(d, 1, length(d) - 2) / 1000;
		else if (d ~ /s$/) print substr(d, 1, length(d) - 1) + 0;
		else if (d ~ /m$/) print substr(d, 1, length(d) - 1) * 60; else print d + 0 }')
	# Rows grouped by server, in the order given, whatever order they were measured in.
	awk -F'\t' -v run="$1" -v hz="$HZ" -v secs="$secs" -v names="${ALL[*]}" '
		BEGIN { printf "%-10s %-5s %5s %5s %9s %7s %6s %6s %9s %6s %6s %6s\n", "server", "mode",
			"size", "conns", "req/s", "p99_us", "errors", "srvCPU", "srvus/req", "usr_us", "sys_us", "rssMB"
			ns = split(names, order, " ") }
		$1 == run { rows[$2] = rows[$2] row($0) }
		END { for (i = 1; i <= ns; i++) printf "%s", rows[order[i]] }
		function row(line,   cpu, k) {
			cpu = $10 / hz; k = ($6 > 0 ? 1e6 / hz / $6 : 0)
			return sprintf("%-10s %-5s %5d %5d %9.0f %7d %6d %5.0f%% %9.2f %6.2f %6.2f %6.1f\n", $2, $3,
				$4, $5, $7, $8, $9, 100 * cpu / secs, cpu * 1e6 * ($6 > 0 ? 1 / $6 : 0), $12 * k,
				$13 * k, $11 / 1024)
		}' "$RESULTS"
}

# Per row, the median over runs of (this server's figure / the c server's, same run).
ratios() {
	awk -F'\t' -v hz="$HZ" -v names="${ALL[*]}" '
		{ key = $3 "\t" $4 "\t" $5; us = ($6 > 0 ? 1e6 * ($10 / hz) / $6 : 0)
		  cpu[$1, $2, key] = us; rps[$1, $2, key] = $7; p99[$1, $2, key] = $8
		  if (!(key in seen)) { seen[key] = 1; keys[nk++] = key }
		  if ($1 > runs) runs = $1 }
		function median(a, k,   i, j, t) {
			for (i = 1; i < k; i++) for (j = i; j > 0 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
			return k % 2 ? a[int(k / 2)] : (a[k / 2 - 1] + a[k / 2]) / 2 }
		END {
			printf "%-10s %-5s %5s %5s %9s %9s %9s\n", "server", "mode", "size", "conns",
				"cpu_ratio", "rps_ratio", "p99_ratio"
			ns = split(names, nm, " ")
			for (i = 0; i < ns * nk; i++) {
				name = nm[int(i / nk) + 1]; key = keys[i % nk]; split(key, f, "\t")
				k = 0
				for (r = 1; r <= runs; r++) {
					c = cpu[r, "c", key]; b = cpu[r, name, key]
					if (c > 0 && rps[r, "c", key] > 0 && p99[r, "c", key] > 0) {
						rc[k] = b / c; rr[k] = rps[r, name, key] / rps[r, "c", key]
						rp[k] = p99[r, name, key] / p99[r, "c", key]; k++ }
				}
				if (k == 0) continue
				printf "%-10s %-5s %5d %5d %9.2f %9.2f %9.2f\n", name, f[1], f[2], f[3],
					median(rc, k), median(rr, k), median(rp, k)
			}
		}' "$RESULTS"
}

# ---- runs -------------------------------------------------------------------------------
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
: >"$RESULTS"
NS=${#ALL[@]}
for ((run = 1; run <= RUNS; run++)); do
	for name in "${ALL[@]}"; do start_server "$name"; done
	if [ "$ORDER" = server ]; then
		for name in "${ALL[@]}"; do
			for c in "${CASE_LIST[@]}"; do
				IFS=: read -r mode size conns <<<"$c"
				measure "$run" "$name" "$mode" "$size" "$conns"
			done
		done
	else
		for ((ci = 0; ci < ${#CASE_LIST[@]}; ci++)); do
			IFS=: read -r mode size conns <<<"${CASE_LIST[ci]}"
			for ((k = 0; k < NS; k++)); do
				measure "$run" "${ALL[(run + ci + k) % NS]}" "$mode" "$size" "$conns"
			done
		done
	fi
	stop_servers
	echo
	echo "run $run of $RUNS ($DUR per case, warm-up $WARMUP; results in $RESULTS)"
	table "$run"
done
if ((RUNS > 1)) && wants c; then
	echo
	echo "median over $RUNS runs of each figure divided by the c server's in the same run"
	ratios
fi
