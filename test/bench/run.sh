#!/usr/bin/env bash
# Measures the sidecar against a plain Go reverse proxy (httputil.ReverseProxy
# with a tuned transport) and nginx, all in front of the same stand-in app, with
# one load generator (wrk), in one run, on 127.0.0.1 only. It prints requests a
# second for each workload and the sidecar's ratios to the baselines: ratios,
# because absolute figures on a shared machine mean little; and the ratio of
# the CPU time the sidecar and the plain proxy spent a request, which the
# machine's other work moves less. Then the latency each proxy adds at one
# connection, and the memory of the sidecar and of the plain proxy with 256
# connections, quiet and busy.
#
#   bash test/bench/run.sh              # 5 s a measurement, 3 rounds, 32 connections
#   DURATION=10s ROUNDS=5 CONNECTIONS=64 bash test/bench/run.sh
#
# Needs wrk; nginx is measured when it is installed. On Debian, as root:
# apt-get install wrk nginx-light. Each process started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${DURATION:-5s}
conns=${CONNECTIONS:-32}
rounds=${ROUNDS:-3}
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
# Built as the Dockerfile builds the image: the size of the code mapped in
# counts in the memory measured below.
go build -trimpath -ldflags "-s -w" -o "$work/sidecar" ./cmd/negotiate-sidecar
go build -trimpath -ldflags "-s -w" -o "$work/benchtool" ./test/bench/benchtool
tool="$work/benchtool"

# start NAME CMD...: runs CMD in the background; its first line of output
# (benchtool prints its address) goes to $work/NAME.addr.
start() {
	local name=$1
	shift
	"$@" >"$work/$name.out" 2>"$work/$name.err" &
	pids+=($!)
	echo $! >"$work/$name.pid"
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

# once URL TOKENS [PID]: requests a second in one wrk run and, given the
# proxy's process, the CPU time it spent a request, in microseconds (user
# and system, from /proc; "-" without a PID).
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
once() {
	local out t0=0 t1=0
	[ -n "${3:-}" ] && t0=$(ticks "$3")
	out=$(BENCH_TOKENS=$2 wrk -t1 -c"$conns" -d"$duration" -s test/bench/request.lua "$1")
	[ -n "${3:-}" ] && t1=$(ticks "$3")
	awk -v pid="${3:-}" -v t="$((t1 - t0))" -v hz="$hz" '
		/^Requests\/sec:/ { rps = $2 }
		/ requests in / { n = $1 }
		END { if (pid != "" && n > 0) printf "%s %.1f\n", rps, t / hz * 1e6 / n; else print rps, "-" }' <<<"$out"
}
# median NUMBERS...: the middle one (the mean of the two middle ones).
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# Each proxy first runs for a moment untimed, with every token: connections
# to the app are open, the heap has grown to its working size, and the
# sidecar has seen the tokens, as in any proxy that has been up a while.
for target in "$plain" "$ngx" "$side" "$nocache"; do
	[ -n "$target" ] || continue
	BENCH_TOKENS="$work/tokens-2000.txt" wrk -t1 -c"$conns" -d2s -s test/bench/request.lua "$target/api/negotiate" >/dev/null
done

printf '%-44s %12s %12s %12s %10s %10s %12s\n' workload "plain Go" nginx sidecar "/plain Go" "/nginx" "CPU/plain"
# measure LABEL PATH TOKENS TARGET PID: $rounds rounds in which the proxies
# take turns, so that a change in the machine's load falls on all of them
# alike. Each round gives the sidecar's ratio to the others measured beside
# it; the median of those ratios is printed, with the median requests a
# second, and the median ratio of the CPU time the sidecar (at PID) spent a
# request to the plain proxy's: under 1, it spent less.
measure() {
	local label=$1 path=$2 tokens=$3 target=$4 pid=$5
	local ps=() ns=() ss=() rp=() rn=() rc=() p pc n s sc ngx_rps=- ngx_ratio=-
	for _ in $(seq "$rounds"); do
		read -r p pc < <(once "$plain$path" "$tokens" "$plain_pid")
		[ -n "$ngx" ] && read -r n _ < <(once "$ngx$path" "$tokens")
		read -r s sc < <(once "$target$path" "$tokens" "$pid")
		ps+=("$p") ss+=("$s") rp+=("$(ratio "$s" "$p")") rc+=("$(ratio "$sc" "$pc")")
		if [ -n "$ngx" ]; then
			ns+=("$n") rn+=("$(ratio "$s" "$n")")
		fi
	done
	if [ -n "$ngx" ]; then
		ngx_rps=$(printf '%.0f' "$(median "${ns[@]}")") ngx_ratio=$(printf '%.2f' "$(median "${rn[@]}")")
	fi
	printf '%-44s %12.0f %12s %12.0f %10.2f %10s %12.2f\n' "$label" "$(median "${ps[@]}")" "$ngx_rps" "$(median "${ss[@]}")" "$(median "${rp[@]}")" "$ngx_ratio" "$(median "${rc[@]}")"
}
plain_pid=$(cat "$work/plain.pid")
side_pid=$(cat "$work/side.pid")
nocache_pid=$(cat "$work/nocache.pid")
measure "negotiate, one caller token repeated" /api/negotiate "$work/tokens-1.txt" "$side" "$side_pid"
measure "negotiate, 2,000 caller tokens in rotation" /api/negotiate "$work/tokens-2000.txt" "$side" "$side_pid"
measure "  the same, token cache off" /api/negotiate "$work/tokens-2000.txt" "$nocache" "$nocache_pid"
measure "another route, with a bearer token" /api/other "$work/tokens-1.txt" "$side" "$side_pid"
measure "another route, without a token" /api/other "$work/tokens-0.txt" "$side" "$side_pid"

# Added latency: the median at one connection, through each proxy, less the
# median straight to the app.
p50() {
	BENCH_TOKENS=$2 wrk -t1 -c1 -d"$duration" --latency -s test/bench/request.lua "$1" |
		awk '$1 == "50%" { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); print v } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v * 1000 } else { sub(/s$/, "", v); print v * 1000000 } }'
}
# The app directly and each proxy take turns, $rounds times; the medians of
# what each proxy adds are printed, and of what the sidecar adds beyond the
# plain proxy measured beside it.
adds_plain=() adds_side=() beyond=()
for _ in $(seq "$rounds"); do
	d=$(p50 "$app/api/negotiate" "$work/tokens-1.txt")
	p=$(p50 "$plain/api/negotiate" "$work/tokens-1.txt")
	s=$(p50 "$side/api/negotiate" "$work/tokens-1.txt")
	adds_plain+=("$(awk -v a="$p" -v b="$d" 'BEGIN {print a - b}')")
	adds_side+=("$(awk -v a="$s" -v b="$d" 'BEGIN {print a - b}')")
	beyond+=("$(awk -v a="$s" -v b="$p" 'BEGIN {print a - b}')")
done
echo
printf 'median latency a proxy adds to a negotiate at one connection: plain Go %.0f us, sidecar %.0f us, %.0f us more than plain Go\n' \
	"$(median "${adds_plain[@]}")" "$(median "${adds_side[@]}")" "$(median "${beyond[@]}")"

# Memory with 256 open client connections: first quiet, each after one
# negotiate, as an ingress's pool of connections; then each negotiating as
# fast as it can, as the caller of the first token. The sidecar against the
# plain proxy, both after the same workloads.
rss_quiet() {
	local pid=$1 url=$2 holdpid
	"$tool" hold -url "$url/api/negotiate" -tokens "$work/tokens-1.txt" -n 256 -for 3s >"$work/hold.out" &
	holdpid=$!
	until [ -s "$work/hold.out" ]; do
		kill -0 "$holdpid" 2>/dev/null || break
		sleep 0.1
	done
	sleep 1
	awk '/^VmRSS/ {printf "%.1f\n", $2 / 1024}' "/proc/$pid/status"
	if ! wait "$holdpid"; then
		echo "holding 256 connections to $url failed" >&2
		exit 1
	fi
}
side_quiet=$(rss_quiet "$side_pid" "$side")
plain_quiet=$(rss_quiet "$plain_pid" "$plain")
printf 'memory with 256 open connections, quiet after a negotiate each: sidecar RSS %s MiB, plain Go %s MiB, ratio %s\n' \
	"$side_quiet" "$plain_quiet" "$(ratio "$side_quiet" "$plain_quiet")"
rss() {
	local pid=$1 url=$2 rss hwm
	BENCH_TOKENS="$work/tokens-1.txt" wrk -t1 -c256 -d"$duration" -s test/bench/request.lua "$url/api/negotiate" >/dev/null &
	local wrkpid=$!
	sleep 2
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
	wait "$wrkpid"
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
	awk -v r="$rss" -v h="$hwm" 'BEGIN {printf "%.1f %.1f\n", r / 1024, h / 1024}'
}
read -r side_rss side_hwm < <(rss "$side_pid" "$side")
read -r plain_rss plain_hwm < <(rss "$plain_pid" "$plain")
printf 'memory with 256 connections negotiating: sidecar RSS %s MiB (peak %s), plain Go %s MiB (peak %s), ratio %s\n' \
	"$side_rss" "$side_hwm" "$plain_rss" "$plain_hwm" "$(ratio "$side_rss" "$plain_rss")"
