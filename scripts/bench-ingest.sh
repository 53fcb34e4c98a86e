#!/usr/bin/env bash
# Ingest throughput and latency of overc-server against the bare tiny_http
# ceiling, measured in the same run on 127.0.0.1.
#
#   scripts/bench-ingest.sh            # long form: 10 s per measurement
#   DURATION=3 MIN_RATIO=0.25 scripts/bench-ingest.sh   # CI's short form
#
# Each measurement is examples/loadgen: N keep-alive connections POSTing
# 3-service status reports for many distinct servers. overc-server runs with
# its defaults (durability = disk: every acknowledged report fsynced).
# Exits non-zero when a threshold is missed: non-200 answers, p99 at 16
# connections over MAX_P99_MS (default 20), or overc/ceiling at 64
# connections under MIN_RATIO (default 0.5, the SPEC's target).
# Needs: nothing beyond the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
MIN_RATIO=${MIN_RATIO:-0.5}
MAX_P99_MS=${MAX_P99_MS:-20}
cargo build --release --quiet --bin overc-server --example loadgen --example bare_server
R="$PWD/target/release"
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() { # start NAME CMD... ; sets url and pid
    "${@:2}" 2>"$work/$1.log" &
    pid=$!
    url=
    for _ in $(seq 100); do
        url=$(sed -n 's/^[a-z -]*listening on //p' "$work/$1.log" | head -1)
        [[ -n "$url" ]] && return
        sleep 0.1
    done
    echo "$1 did not start: $(cat "$work/$1.log")"; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=; }
field() { sed -n "s|.* $1=\([^ ]*\).*|\1|p" <<<"$2"; }

declare -A res
cd "$work"
start bare "$R/examples/bare_server" 127.0.0.1:0 32
for c in 16 64; do res[bare,$c]=$("$R/examples/loadgen" --url "$url" -c "$c" -d "$DURATION" --prefix b$c); done
stop
start overc "$R/overc-server" --listen 127.0.0.1:0
for c in 16 64; do res[overc,$c]=$("$R/examples/loadgen" --url "$url" -c "$c" -d "$DURATION" --prefix o$c); done
stop

fail=0
printf '%-7s %5s %10s %11s %8s %8s %8s %8s %7s\n' server conns "req/s" "reports/s" p50_ms p90_ms p99_ms max_ms non200
for s in bare overc; do
    for c in 16 64; do
        r=${res[$s,$c]}
        printf '%-7s %5s %10s %11s %8s %8s %8s %8s %7s\n' "$s" "$c" "$(field 'req/s' "$r")" "$(field 'reports/s' "$r")" \
            "$(field p50_ms "$r")" "$(field p90_ms "$r")" "$(field p99_ms "$r")" "$(field max_ms "$r")" "$(field non200 "$r")"
        if [[ $(field non200 "$r") != 0 || $(field errors "$r") != 0 ]]; then echo "FAIL: $s at $c connections had non-200 answers or errors"; fail=1; fi
    done
done
for c in 16 64; do
    ratio=$(awk -v a="$(field 'req/s' "${res[overc,$c]}")" -v b="$(field 'req/s' "${res[bare,$c]}")" 'BEGIN { printf "%.2f", a / b }')
    echo "overc/ceiling at $c connections: $ratio"
    if [[ $c == 64 ]] && awk -v r="$ratio" -v m="$MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
        echo "FAIL: ratio $ratio at 64 connections is under $MIN_RATIO"; fail=1
    fi
done
p99=$(field p99_ms "${res[overc,16]}")
echo "overc p99 at 16 connections: $p99 ms (limit $MAX_P99_MS)"
if awk -v p="$p99" -v m="$MAX_P99_MS" 'BEGIN { exit !(p > m) }'; then echo "FAIL: p99 over $MAX_P99_MS ms"; fail=1; fi
exit $fail
