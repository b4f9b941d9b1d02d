#!/usr/bin/env bash
# Measures the sidecar against a plain Go reverse proxy (httputil.ReverseProxy
# with a tuned transport) and nginx, all in front of the same stand-in app, with
# one load generator (wrk), in one run, on 127.0.0.1 only. It prints requests a
# second for each workload and the sidecar's ratios to the baselines: ratios,
# because absolute figures on a shared machine mean little.
#
#   bash test/bench/run.sh              # 5 s a measurement, 32 connections
#   DURATION=10s CONNECTIONS=64 bash test/bench/run.sh
#
# Needs wrk; nginx is measured when it is installed. On Debian, as root:
# apt-get install wrk nginx-light. Each process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${DURATION:-5s}
conns=${CONNECTIONS:-32}
rounds=${ROUNDS:-2}
log_level=${LOG_LEVEL:-info} # the sidecar's default

if ! command -v wrk >/dev/null; then
	echo "run.sh needs wrk (Debian: apt-get install wrk)" >&2
	exit 1
fi

work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

echo "building..." >&2
go build -o "$work/sidecar" ./cmd/negotiate-sidecar
go build -o "$work/benchtool" ./test/bench/benchtool
tool="$work/benchtool"

# start NAME CMD...: runs CMD in the background; its first line of output
# (benchtool prints its address) goes to $work/NAME.addr.
start() {
	local name=$1
	shift
	"$@" >"$work/$name.out" 2>"$work/$name.err" &
	pids+=($!)
	for _ in $(seq 100); do
		[ -s "$work/$name.out" ] && break
		sleep 0.05
	done
	head -n1 "$work/$name.out" >"$work/$name.addr"
}

# wait_http URL: until it answers.
wait_http() {
	for _ in $(seq 200); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.05
	done
	echo "nothing answered at $1" >&2
	return 1
}

access_key=YmVuY2gtYWNjZXNzLWtleS1mb3ItdGhlLXN0YW5kLWluLWFwcA==
issuer=https://idp.bench.test/
audience=api://bench

"$tool" mint -jwks "$work/jwks.json" -tokens "$work/tokens-2000.txt" -n 2000 -issuer "$issuer" -audience "$audience"
head -n1 "$work/tokens-2000.txt" >"$work/tokens-1.txt"
: >"$work/tokens-0.txt"

start app "$tool" app -access-key "$access_key"
app=http://$(cat "$work/app.addr")
start plain "$tool" plainproxy -upstream "$app"
plain=http://$(cat "$work/plain.addr")

# sidecar NAME EXTRA_FLAGS...: starts a sidecar in front of the app.
sidecar() {
	local name=$1 port admin
	shift
	port=$("$tool" freeport)
	admin=$("$tool" freeport)
	AzureSignalRConnectionString="Endpoint=https://bench.service.signalr.net;AccessKey=$access_key;Version=1.0;" \
		"$work/sidecar" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --upstream "$app" \
		--issuer "$issuer" --audience "$audience" --jwks-file "$work/jwks.json" --log-level "$log_level" "$@" \
		>"$work/$name.out" 2>"$work/$name.err" &
	pids+=($!)
	echo $! >"$work/$name.pid"
	echo "http://127.0.0.1:$port" >"$work/$name.addr"
	wait_http "http://127.0.0.1:$admin/readyz"
}
sidecar side
sidecar nocache --token-cache-size 0
side=$(cat "$work/side.addr")
nocache=$(cat "$work/nocache.addr")

ngx=""
if command -v nginx >/dev/null; then
	port=$("$tool" freeport)
	cat >"$work/nginx.conf" <<EOF
worker_processes auto;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
	upstream app { server $(cat "$work/app.addr"); keepalive 256; }
	server {
		listen 127.0.0.1:$port;
		location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
	}
}
EOF
	nginx -c "$work/nginx.conf" -e "$work/nginx-error.log" &
	pids+=($!)
	ngx=http://127.0.0.1:$port
	wait_http "$ngx/"
else
	echo "nginx is not installed: measuring against the plain Go proxy only" >&2
fi
wait_http "$plain/"

# once URL TOKENS: requests a second in one wrk run.
once() {
	BENCH_TOKENS=$2 wrk -t1 -c"$conns" -d"$duration" -s test/bench/request.lua "$1" | awk '/^Requests\/sec:/ {print $2}'
}
best() { awk -v a="$1" -v b="$2" 'BEGIN {print (b > a) ? b : a}'; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

printf '%-44s %12s %12s %12s %10s %10s\n' workload "plain Go" nginx sidecar "/plain Go" "/nginx"
# measure LABEL PATH TOKENS TARGET: the best of $rounds runs for each proxy,
# the proxies taking turns within each round, so that a change in the
# machine's load during the measurement falls on all of them alike.
measure() {
	local label=$1 path=$2 tokens=$3 target=$4
	local p=0 n=0 s=0
	for _ in $(seq "$rounds"); do
		p=$(best "$p" "$(once "$plain$path" "$tokens")")
		[ -n "$ngx" ] && n=$(best "$n" "$(once "$ngx$path" "$tokens")")
		s=$(best "$s" "$(once "$target$path" "$tokens")")
	done
	[ -n "$ngx" ] && n=$(printf '%.0f' "$n") || n=-
	printf '%-44s %12.0f %12s %12.0f %10s %10s\n' "$label" "$p" "$n" "$s" "$(ratio "$s" "$p")" "$( [ "$n" = - ] && echo - || ratio "$s" "$n")"
}
measure "negotiate, one caller token repeated" /api/negotiate "$work/tokens-1.txt" "$side"
measure "negotiate, 2,000 caller tokens in rotation" /api/negotiate "$work/tokens-2000.txt" "$side"
measure "  the same, token cache off" /api/negotiate "$work/tokens-2000.txt" "$nocache"
measure "another route, with a bearer token" /api/other "$work/tokens-1.txt" "$side"
measure "another route, without a token" /api/other "$work/tokens-0.txt" "$side"

# Added latency: the median at one connection, through each proxy, less the
# median straight to the app.
p50() {
	BENCH_TOKENS=$2 wrk -t1 -c1 -d"$duration" --latency -s test/bench/request.lua "$1" |
		awk '$1 == "50%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); print v } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 } else { sub(/s$/, "", v); print v * 1000000 } }'
}
direct=$(p50 "$app/api/negotiate" "$work/tokens-1.txt")
echo
printf 'median latency of a negotiate at one connection: app directly %.0f us' "$direct"
for t in "plain Go:$plain" "sidecar:$side"; do
	l=$(p50 "${t#*:}/api/negotiate" "$work/tokens-1.txt")
	printf ', %s adds %.0f us' "${t%%:*}" "$(awk -v a="$l" -v b="$direct" 'BEGIN {print a - b}')"
done
echo

# Memory with 256 open client connections.
wrk -t1 -c256 -d"$duration" -s test/bench/request.lua "$side/api/negotiate" >/dev/null &
wrkpid=$!
sleep 2
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$(cat "$work/side.pid")/status")
wait "$wrkpid"
hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$(cat "$work/side.pid")/status")
printf 'sidecar memory with 256 connections: RSS %.1f MiB (peak %.1f MiB)\n' "$(awk -v k="$rss" 'BEGIN {print k / 1024}')" "$(awk -v k="$hwm" 'BEGIN {print k / 1024}')"
