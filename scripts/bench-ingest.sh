#!/usr/bin/env bash
# Ingest throughput and latency of overc-server against the bare tiny_http
# ceiling, measured in the same run on 127.0.0.1.
#
#   scripts/bench-ingest.sh                              # long form: 5 pairs of 8 s runs
#   RUNS=1 DURATION=2 WARMUP=1 MIN_RATIO=0.25 scripts/bench-ingest.sh   # CI's short form
#
# Each measurement is examples/loadgen: N keep-alive connections POSTing
# 3-service status reports for many distinct servers. overc-server runs with
# its defaults (durability = disk: every acknowledged report fsynced); the
# bare server (examples/bare_server) in overc-server's thread layout: intake
# threads taking requests in batches, workers for the rest.
#
# Every run starts a fresh server process, loads it for WARMUP seconds (not
# counted: overc's WAL grows to its working size, caches fill), then measures
# DURATION seconds. The speed of this 2-core VM drifts: the same bare server
# binary gives 41,000 in one run and 58,000 req/s at 64 connections a minute
# later, with the same context switches per request and 40 % more CPU time
# per request in the slow runs. So the two servers are measured in pairs, one
# right after the other (which goes first alternates from pair to pair), and
# the ratio overc/ceiling is the median of the RUNS pairs' ratios: each pair
# saw the same host, and the median is not moved by a pair whose two runs
# straddled a change of speed. Best of RUNS against best of RUNS is printed
# too; it compares the two servers only if both had a run in the fast phase.
#
# Exits non-zero when a threshold is missed: non-200 answers, p99 at 16
# connections over MAX_P99_MS (default 20), or the median pair ratio at 64
# connections under MIN_RATIO (default 0.5, the SPEC's target).
# Needs: nothing beyond the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-2}
RUNS=${RUNS:-5}
MIN_RATIO=${MIN_RATIO:-0.5}
MAX_P99_MS=${MAX_P99_MS:-20}
cargo build --release --quiet --bin overc-server --example loadgen --example bare_server
R="$PWD/target/release"
work=$(mktemp -d)
cleanup() { [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() { # start NAME CMD... : a fresh log each time, as start_server appends
    : >"$work/$1.log"
    start_server "$work/$1.log" "${@:2}" || exit 1
}
stop() { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=; }
field() { sed -n "s|.* $1=\([^ ]*\).*|\1|p" <<<"$2"; }

declare -A best
declare -A pairs
fail=0
printf '%-7s %5s %4s %10s %11s %8s %8s %8s %8s %7s\n' server conns pair "req/s" "reports/s" p50_ms p90_ms p99_ms max_ms non200
for run in $(seq "$RUNS"); do
    for c in 16 64; do
        # Which server goes first alternates, so neither always gets the
        # first or the second half of a pair.
        if ((run % 2)); then order="bare overc"; else order="overc bare"; fi
        declare -A rps=()
        for s in $order; do
            rm -rf "$work/db" && mkdir "$work/db"
            if [[ $s == bare ]]; then
                start bare "$R/examples/bare_server" 127.0.0.1:0 32
            else
                start overc "$R/overc-server" --listen 127.0.0.1:0 --database "$work/db/overc.db"
            fi
            if ((WARMUP > 0)); then
                "$R/examples/loadgen" --url "$SERVER_URL" -c "$c" -d "$WARMUP" --prefix "w$run" >/dev/null
            fi
            r=$("$R/examples/loadgen" --url "$SERVER_URL" -c "$c" -d "$DURATION" --prefix "m$run")
            stop
            printf '%-7s %5s %4s %10s %11s %8s %8s %8s %8s %7s\n' "$s" "$c" "$run" "$(field 'req/s' "$r")" "$(field 'reports/s' "$r")" \
                "$(field p50_ms "$r")" "$(field p90_ms "$r")" "$(field p99_ms "$r")" "$(field max_ms "$r")" "$(field non200 "$r")"
            if [[ $(field non200 "$r") != 0 || $(field errors "$r") != 0 ]]; then
                echo "FAIL: $s at $c connections had non-200 answers or errors"; fail=1
            fi
            if [[ $s == overc && $c == 16 ]] && awk -v p="$(field p99_ms "$r")" -v m="$MAX_P99_MS" 'BEGIN { exit !(p > m) }'; then
                echo "FAIL: overc p99 at 16 connections over $MAX_P99_MS ms"; fail=1
            fi
            rps[$s]=$(field 'req/s' "$r")
            if [[ -z "${best[$s,$c]:-}" ]] || ((rps[$s] > best[$s,$c])); then best[$s,$c]=${rps[$s]}; fi
        done
        # Kept unrounded: the threshold is checked on these, not on the
        # two-decimal figures printed.
        pairs[$c]+="$(awk -v a="${rps[overc]}" -v b="${rps[bare]}" 'BEGIN { printf "%.6f", a / b }') "
    done
done
for c in 16 64; do
    median=$(tr ' ' '\n' <<<"${pairs[$c]}" | grep . | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6f", m }')
    bb=$(awk -v a="${best[overc,$c]}" -v b="${best[bare,$c]}" 'BEGIN { printf "%.2f", a / b }')
    shown=$(awk -v p="${pairs[$c]}" 'BEGIN { n = split(p, v, " "); for (i = 1; i <= n; i++) printf "%.2f ", v[i] }')
    echo "at $c connections: overc/ceiling pair by pair ${shown}-> median $(printf '%.2f' "$median")"
    echo "  best of $RUNS: overc ${best[overc,$c]} req/s, bare ${best[bare,$c]} req/s, best against best $bb"
    if [[ $c == 64 ]] && awk -v r="$median" -v m="$MIN_RATIO" 'BEGIN { exit !(r < m) }'; then
        echo "FAIL: median ratio $(printf '%.4f' "$median") at 64 connections is under $MIN_RATIO"; fail=1
    fi
done
exit $fail
