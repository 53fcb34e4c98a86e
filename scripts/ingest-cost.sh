#!/usr/bin/env bash
# Where an ingest request's CPU goes: loads overc-server (or the bare
# tiny_http ceiling) with examples/loadgen and prints, per request, the CPU
# time and context switches of each group of the server's threads, the load
# generator's CPU, and the machine's idle and interrupt share.
#
#   scripts/ingest-cost.sh                    # overc-server, 64 connections, 5 s
#   SERVER=bare scripts/ingest-cost.sh        # the bare ceiling instead
#   CONNS=16 DURATION=10 scripts/ingest-cost.sh -- --durability process
#
# Arguments after `--` go to overc-server. Threads are grouped by name:
# overc-http (workers), overc-writer, overc-fsync, overc-supervisor, …;
# "overc-server"/"bare_server" are tiny_http's connection threads (and, for
# the bare server, its workers too). Reads /proc only; needs Linux and
# nothing beyond the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
SERVER=${SERVER:-overc}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
[[ "${1:-}" == "--" ]] && shift
cargo build --release --quiet --bin overc-server --example loadgen --example bare_server
R="$PWD/target/release"
work=$(mktemp -d)
cleanup() { [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

if [[ $SERVER == bare ]]; then
    start_server "$work/log" "$R/examples/bare_server" 127.0.0.1:0 32
else
    start_server "$work/log" "$R/overc-server" --listen 127.0.0.1:0 --database "$work/overc.db" "$@"
fi
pid=$SERVER_PID url=$SERVER_URL
"$R/examples/loadgen" --url "$url" -c "$CONNS" -d "$WARMUP" --prefix warm >/dev/null

# name voluntary involuntary cpu-ticks, summed over the threads of a group
threads() {
    for t in /proc/"$pid"/task/*; do
        printf '%s %s %s\n' "$(tr ' ' _ <"$t/comm")" \
            "$(awk '/^voluntary_ctxt/ {v=$2} /^nonvoluntary_ctxt/ {n=$2} END {print v, n}' "$t/status")" \
            "$(awk '{print $14 + $15}' "$t/stat")"
    done | awk '{g=$1; sub(/-[0-9]+$/, "", g); v[g]+=$2; n[g]+=$3; c[g]+=$4}
                END {for (g in v) print g, v[g], n[g], c[g]}' | sort
}
machine() { awk '/^cpu / {print $2+$3+$4+$5+$6+$7+$8+$9, $5+$6, $7+$8}' /proc/stat; }

threads >"$work/a"
read -r total0 idle0 irq0 < <(machine)
load=("$R/examples/loadgen" --url "$url" -c "$CONNS" -d "$DURATION" --prefix m)
if [[ -x /usr/bin/time ]]; then
    out=$({ /usr/bin/time -f "LOADGEN_CPU %U %S" "${load[@]}"; } 2>&1)
else
    # Without GNU time the load generator's own CPU is not shown.
    out=$("${load[@]}")
fi
read -r total1 idle1 irq1 < <(machine)
threads >"$work/b"
n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
[[ -n "$n" && "$n" -gt 0 ]] || { echo "no requests: $out"; exit 1; }
tick_us=$((1000000 / $(getconf CLK_TCK)))

grep -v LOADGEN_CPU <<<"$out"
printf '%-18s %12s %12s %14s\n' "threads" "CPU us/req" "voluntary" "involuntary"
join "$work/a" "$work/b" | awk -v n="$n" -v t="$tick_us" '{
    printf "%-18s %12.1f %12.3f %14.3f\n", $1, ($7-$4)*t/n, ($5-$2)/n, ($6-$3)/n
    cpu += ($7-$4)*t/n; vol += ($5-$2)/n; inv += ($6-$3)/n }
    END { printf "%-18s %12.1f %12.3f %14.3f\n", "server total", cpu, vol, inv }'
lg=$(sed -n 's/^LOADGEN_CPU //p' <<<"$out")
if [[ -n "$lg" ]]; then
    awk -v n="$n" -v lg="$lg" 'BEGIN { split(lg, x, " "); printf "%-18s %12.1f\n", "load generator", (x[1]+x[2])*1e6/n }'
fi
awk -v t=$((total1 - total0)) -v i=$((idle1 - idle0)) -v q=$((irq1 - irq0)) \
    'BEGIN { printf "machine: %.0f %% idle, %.0f %% in interrupts (not counted above)\n", 100*i/t, 100*q/t }'
