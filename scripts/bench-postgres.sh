#!/usr/bin/env bash
# SPEC §8's PostgreSQL figures, measured in one run on this machine
# (BENCHMARKS.md, "PostgreSQL: several servers, failover"):
#
#  - ingest: requests/s and latency at 16 and 64 connections (examples/
#    loadgen: keep-alive connections POSTing 3-service status reports) for
#    one overc-server on SQLite, one on PostgreSQL, and two and three on one
#    PostgreSQL database, the load generator spreading its connections over
#    them (connection i to server i mod n, as a load balancer would);
#  - beside them PostgreSQL's own limit: examples/pg_limit writes the rows
#    overc writes per report (a history row and the service's due time per
#    service) with the same group commit (up to 512 reports a transaction,
#    each answered after COMMIT) through one writer connection and through
#    three, without overc's reads, HTTP and JSON;
#  - failover: KILLS times kill -9 of the leader of three servers under a
#    light load; the time from the kill until a survivor's /ui/api/status/
#    shows a survivor as `stats.leader`, after which each survivor must take
#    a report with 200; median and max, against leader-timeout.
#
#   scripts/bench-postgres.sh                                # long form
#   DURATION=2 WARMUP=1 KILLS=2 scripts/bench-postgres.sh   # short form (checks the script)
#
# PostgreSQL is a throwaway cluster (initdb in a temporary folder, on a free
# loopback port) with its default settings, durability included: fsync and
# synchronous_commit on, so a commit waits for the disk, as overc on SQLite
# with its default `durability = disk` does. Each measurement gets a fresh
# database (a fresh SQLite file) and fresh server processes, is warmed up for
# WARMUP seconds with the same hosts (not counted: registration, caches),
# then measured for DURATION seconds. Prints a markdown table. Exits non-zero
# when an answer was not 200, or a takeover took longer than leader-timeout.
# Needs: the Debian package postgresql, root or the postgres user, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/pg_lib.sh
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
KILLS=${KILLS:-10}
CONNECTIONS=${CONNECTIONS:-"16 64"}
LEADER_TIMEOUT=${LEADER_TIMEOUT:-10}

cargo build --release --quiet --bin overc-server --example loadgen --example pg_limit
R=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d "${TMPDIR:-/tmp}/overc-bench-pg.XXXXXX")
pids=()
bg=
cleanup() {
    for p in "${pids[@]}" $bg; do [[ -z "$p" ]] || kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pg_cleanup
    rm -rf "$work"
}
trap cleanup EXIT
fail=0
field() { sed -n "s|.* $1=\([^ ]*\).*|\1|p" <<<"$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

pg_init "$work" || exit 1
setting() { pg_psql postgres -Atc "SHOW $1"; }
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT, data on $(stat -f -c %T "$work") ($work)"
echo "settings (the defaults): fsync=$(setting fsync) synchronous_commit=$(setting synchronous_commit)" \
    "wal_sync_method=$(setting wal_sync_method) shared_buffers=$(setting shared_buffers)" \
    "max_connections=$(setting max_connections)"
echo "host: $(nproc) CPUs, $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "runs: ${WARMUP} s warm-up + ${DURATION} s measured each; failover over $KILLS kills, leader-timeout $LEADER_TIMEOUT s"
echo

# start_set N LOGNAME DATABASE: N overc-server processes on fixed free ports;
# sets pids and urls (comma-separated in `urls`).
start_set() {
    local n=$1 name=$2 db=$3
    pids=() url=() ports=()
    for i in $(seq 0 $((n - 1))); do
        ports[$i]=$(free_port)
        start_one "$name" "$db" "$i" || return 1
    done
    urls=$(IFS=,; echo "${url[*]}")
}
starts=0
start_one() { # start_one LOGNAME DATABASE I: server I (again) on its port
    starts=$((starts + 1))
    OVERC_LEADER_TIMEOUT=$LEADER_TIMEOUT start_server "$work/$1.$starts.log" \
        "$R/overc-server" --listen "127.0.0.1:${ports[$3]}" --database "$2" || return 1
    pids[$3]=$SERVER_PID url[$3]=$SERVER_URL
}
stop_set() {
    for p in "${pids[@]}"; do [[ -z "$p" ]] || kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do [[ -z "$p" ]] || wait "$p" 2>/dev/null || true; done
    pids=()
}

rows=()
row() { rows+=("$(printf '| %s | %s | %s | %s | %s | %s |' "$@")"); echo "${rows[-1]}"; }
echo "| setup | connections | req/s (3-service reports) | p50 ms | p99 ms | notes |"
echo "|---|---:|---:|---:|---:|---|"
measure() { # measure SETUP CONNECTIONS: loadgen on $urls, warmed up, then measured
    local r
    "$R/examples/loadgen" --url "$urls" -c "$2" -d "$WARMUP" --prefix b >/dev/null
    r=$("$R/examples/loadgen" --url "$urls" -c "$2" -d "$DURATION" --prefix b)
    echo "$r" >>"$work/loadgen.out"
    local note="all 200"
    if [[ $(field non200 "$r") != 0 || $(field errors "$r") != 0 ]]; then
        note="FAIL: $(field non200 "$r") not 200, $(field errors "$r") errors ($(field codes "$r"))"
        fail=1
    fi
    row "$1" "$2" "$(field 'req/s' "$r")" "$(field p50_ms "$r")" "$(field p99_ms "$r")" "$note"
}
n=0
for c in $CONNECTIONS; do
    n=$((n + 1))
    mkdir -p "$work/sqlite$n"
    start_set 1 sqlite "$work/sqlite$n/overc.db" || exit 1
    measure "overc on SQLite (durability = disk)" "$c"
    stop_set
    for servers in 1 2 3; do
        pg_createdb "ingest_${servers}_$n"
        start_set "$servers" "pg$servers" "$(pg_url "ingest_${servers}_$n")" || exit 1
        case $servers in
            1) setup="overc on PostgreSQL" ;;
            *) setup="$servers overc on one PostgreSQL" ;;
        esac
        measure "$setup" "$c"
        stop_set
    done
    for writers in 1 3; do
        pg_createdb "limit_${writers}_$n"
        r=$("$R/examples/pg_limit" --url "$(pg_url "limit_${writers}_$n")" -c "$c" \
            --writers "$writers" --warmup "$WARMUP" -d "$DURATION")
        echo "$r" >>"$work/pg_limit.out"
        row "PostgreSQL's limit, $writers writer$([[ $writers == 1 ]] || echo s) (pg_limit)" "$c" \
            "$(field 'reports/s' "$r")" "$(field p50_ms "$r")" "$(field p99_ms "$r")" \
            "$(field 'commits/s' "$r") commits/s, $(field 'rows/s' "$r") rows/s"
    done
done
echo

# Failover: three servers, KILLS times kill -9 of the leader under a light
# load, the killed one started again (same port) before the next kill.
pg_createdb failover
db=$(pg_url failover)
start_set 3 failover "$db" || exit 1
curl -sf -o /dev/null "${url[0]}/api/ping" -d '{"server": {"name": "probe", "key": "k"}}' ||
    { echo "FAIL: no answer from ${url[0]}"; exit 1; }
leader_of() { # leader_of I: the index of the leader server I shows, or -1
    local l j
    l=$(curl -s --max-time 5 "${url[$1]}/ui/api/status/server/1" | grep -o '"leader": *{"listen": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/') || true
    for j in 0 1 2; do
        if [[ -n "$l" && "http://$l" == "${url[$j]}" && -n "${pids[$j]}" ]]; then echo "$j"; return; fi
    done
    echo -1
}
now() { date +%s.%N; }
"$R/examples/loadgen" --url "$urls" -c 4 --pause-ms 10 -d $((KILLS * 4 + 5)) --prefix f >"$work/failover.load" &
bg=$!
sleep 1
times=()
for k in $(seq "$KILLS"); do
    t0=$SECONDS
    until leader=$(leader_of 0) && ((leader >= 0)); do
        ((SECONDS - t0 > 2 * LEADER_TIMEOUT)) && { echo "FAIL: no leader"; exit 1; }
        sleep 0.1
    done
    a=$(((leader + 1) % 3)) b=$(((leader + 2) % 3))
    killed=${pids[$leader]}
    t_kill=$(now)
    # Waited for at once, quietly: bash would report the kill later.
    { kill -9 "$killed" && wait "$killed"; } 2>/dev/null || true
    pids[$leader]=
    while :; do
        new=$(leader_of "$a")
        [[ $new == "$a" || $new == "$b" ]] && break
        if awk -v a="$t_kill" -v b="$(now)" -v m="$LEADER_TIMEOUT" 'BEGIN { exit !(b - a > 2 * m) }'; then
            echo "FAIL: no takeover within twice leader-timeout"; exit 1
        fi
        sleep 0.02
    done
    took=$(awk -v a="$t_kill" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }')
    for s in "$a" "$b"; do
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${url[$s]}/api/set/service/status" \
            -d '{"server": {"name": "probe", "key": "k"}, "period": 3600, "services": [{"name": "p", "state": "OK"}]}')
        [[ $code == 200 ]] || { echo "FAIL: server $s answered $code after the takeover"; fail=1; }
    done
    times+=("$took")
    echo "kill $k: server $leader killed, server $new leads after $took s"
    awk -v t="$took" -v m="$LEADER_TIMEOUT" 'BEGIN { exit !(t > m) }' &&
        { echo "FAIL: takeover over leader-timeout"; fail=1; }
    start_one failover "$db" "$leader" || exit 1
done
wait "$bg" || true
bg=
r=$(cat "$work/failover.load")
stop_set
read -r median max < <(printf '%s\n' "${times[@]}" | sort -n |
    awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f %.2f\n", m, v[NR] }')
echo "load during the kills: $(field non200 "$r") answers not 200, $(field errors "$r") connection errors (to the killed servers, retried on the next), codes $(field codes "$r")"
[[ $(field non200 "$r") == 0 ]] || { echo "FAIL: answers other than 200 during the failovers"; fail=1; }
echo
echo "| failover (kill -9 of the leader of 3) | kills | median s | max s | leader-timeout s |"
echo "|---|---:|---:|---:|---:|"
echo "| time until a survivor leads | $KILLS | $median | $max | $LEADER_TIMEOUT |"
echo
echo "PostgreSQL $PG_VERSION, fsync=$(setting fsync), synchronous_commit=$(setting synchronous_commit); ${DURATION} s runs after ${WARMUP} s warm-up"
exit $fail
