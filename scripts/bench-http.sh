#!/usr/bin/env bash
# keepwire serve --framing http against nginx, in one run: requests/s and server CPU per
# request under wrk (HTTP/1.1 keep-alive), ab -k (HTTP/1.0 keep-alive) and ab (a connection
# per request), then `keepwire bench --framing http --target` against nginx.
#
#   cargo build --release -p keepwire-cli && scripts/bench-http.sh [SECONDS]
#
# Each server runs alone, pinned to one CPU (the last one) with taskset; the load tools run
# pinned to CPU 0. nginx: one process (master_process off), access log off, `return 200`
# with the same body as keepwire's --reply, its own prefix and config in a temp directory.
# CPU per request = (utime + stime of the server process, from /proc/PID/stat, over the
# run) / requests answered, also split into user space (utime) and the kernel (stime); the
# clock tick is 1/CLK_TCK s, so runs of a few seconds give a few hundred ticks. Requires: nginx (nginx-light), wrk, ab (apache2-utils), taskset.
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${1:-3}
KEEPWIRE=${KEEPWIRE:-target/release/keepwire}
BODY=hello
CONNS=32
TICK=$(getconf CLK_TCK)
LAST_CPU=$(($(nproc) - 1))
for tool in nginx wrk ab taskset "$KEEPWIRE"; do
    command -v "$tool" >/dev/null || { echo "bench-http: $tool not found (scripts/install-test-deps.sh; cargo build --release -p keepwire-cli)" >&2; exit 2; }
done

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until something answers HTTP on $1 (at most 10 s).
wait_http() {
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "bench-http: nothing listens on port $1" >&2
    exit 1
}

# utime and stime of process $1, in clock ticks.
cpu_ticks() { awk '{ print $14, $15 }' "/proc/$1/stat"; }

start_nginx() {
    local port=$1
    mkdir -p "$TMP/nginx/body" "$TMP/nginx/logs"
    cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    keepalive_requests 1000000;
    keepalive_timeout 65s;
    server {
        listen 127.0.0.1:$port;
        location / { default_type text/plain; return 200 "$BODY"; }
    }
}
EOF
    taskset -c "$LAST_CPU" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
    PIDS+=($!)
    SERVER_PID=$!
    wait_http "$port"
}

start_keepwire() {
    local port=$1
    taskset -c "$LAST_CPU" "$KEEPWIRE" serve --listen "127.0.0.1:$port" --framing http \
        --reply "text:$BODY" --idle-timeout 65s >"$TMP/keepwire.out" 2>"$TMP/keepwire.err" &
    PIDS+=($!)
    SERVER_PID=$!
    wait_http "$port"
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

# One load run: prints "requests/s cpu_us_per_request user_us sys_us".
measure() {
    local tool=$1 url=$2 out u0 s0 u1 s1 reqs rps
    read -r u0 s0 <<<"$(cpu_ticks "$SERVER_PID")"
    case $tool in
        wrk) out=$(taskset -c 0 wrk -t 1 -c "$CONNS" -d "${SECS}s" "$url")
             reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
             rps=$(awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$out")
             if grep -q 'Socket errors' <<<"$out"; then echo "bench-http: $url: $(grep 'Socket errors' <<<"$out")" >&2; fi ;;
        ab-k|ab) local k=(); [[ $tool == ab-k ]] && k=(-k)
             out=$(taskset -c 0 ab "${k[@]}" -q -c "$CONNS" -t "$SECS" -n 10000000 -s 10 "$url" 2>&1)
             reqs=$(awk '/^Complete requests/ { print $3 }' <<<"$out")
             rps=$(awk '/^Requests per second/ { printf "%d", $4 }' <<<"$out")
             local failed; failed=$(awk '/^Failed requests/ { print $3 }' <<<"$out")
             if [[ ${failed:-0} != 0 ]]; then echo "bench-http: $url: $failed failed requests under $tool" >&2; fi ;;
    esac
    read -r u1 s1 <<<"$(cpu_ticks "$SERVER_PID")"
    awk -v r="$reqs" -v p="$rps" -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v hz="$TICK" \
        'BEGIN { k = (r > 0 ? 1e6 / hz / r : 0)
                 printf "%s %.1f %.1f %.1f\n", p, (u + s) * k, u * k, s * k }'
}

declare -A RES
run_server() {
    local name=$1 port
    port=$(free_port)
    "start_$name" "$port"
    for tool in wrk ab-k ab; do
        RES[$name,$tool]=$(measure "$tool" "http://127.0.0.1:$port/")
    done
    if [[ $name == nginx ]]; then
        echo "== keepwire bench --framing http --target 127.0.0.1:$port (nginx) --connections $CONNS --duration ${SECS}s"
        taskset -c 0 "$KEEPWIRE" bench --framing http --target "127.0.0.1:$port" \
            --connections "$CONNS" --duration "${SECS}s" 2>/dev/null
    fi
    stop_server
}

echo "== $(date -u +%FT%TZ) $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "   servers pinned to CPU $LAST_CPU, load on CPU 0, ${SECS}s per run, $CONNS connections, body \"$BODY\""
run_server nginx
run_server keepwire
echo
printf '%-28s %12s %12s %14s %14s %10s %14s %14s\n' "load" "nginx rps" "keepwire rps" "nginx us/req" "keepwire us/req" "cpu ratio" "nginx usr+sys" "keepw usr+sys"
for tool in wrk ab-k ab; do
    read -r nr nc nu ns <<<"${RES[nginx,$tool]}"
    read -r kr kc ku ks <<<"${RES[keepwire,$tool]}"
    case $tool in
        wrk) label="wrk -c $CONNS (1.1 keep-alive)" ;;
        ab-k) label="ab -k -c $CONNS (1.0 keep-alive)" ;;
        ab) label="ab -c $CONNS (no keep-alive)" ;;
    esac
    ratio=$(awk -v a="$kc" -v b="$nc" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    printf '%-28s %12s %12s %14s %14s %10s %14s %14s\n' "$label" "$nr" "$kr" "$nc" "$kc" "$ratio" "$nu+$ns" "$ku+$ks"
done
