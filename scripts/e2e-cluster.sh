#!/usr/bin/env bash
# Three overc-server processes on one PostgreSQL (SPEC §10), on loopback,
# each with two alert plugins that append a line per alert (`ALERT_ID PID
# TIME`, PID the overc-server that ran it) to a file of their own:
#
#  1. Normal operation: reports (examples/loadgen, its connections spread
#     over the three) and a stream of alerts (scripts/cluster.py stream:
#     new services in FAIL and posted messages, spread over the three).
#     Every alert reaches each plugin exactly once.
#  2. kill -9 of the leader during the stream, while both plugins run an
#     alert whose run takes 2 s (a message with "in flight"). Another server
#     leads within leader-timeout; a service with a short period, reported
#     to a non-leader just before the kill, has its offline alert delivered
#     once to each plugin within leader-timeout + period + 5 s of the kill.
#     Every alert reaches each plugin at least once; the one in flight
#     twice (run by the killed server and again by the new leader), and
#     no other alert twice: a plugin's worker runs one command at a time and
#     records it before the next, so a kill leaves at most one run
#     unrecorded per plugin.
#  3. pg_ctl stop -m immediate under load: the servers answer 503 (reports
#     and reads), no answer takes longer than MAX_ANSWER_MS (default 10 s;
#     a writer's batch waits up to 2 s for a connection, so a request waits
#     about 4 s at most: for the batch in progress and for its own), and
#     with PostgreSQL back they answer 200 again by themselves, a leader
#     runs and delivers again.
# At the end every report and alert answered 200 during the whole run is in
# the database (the reports' history rows, the alert list).
#
# Prints the takeover time, the duplicates, the 503 counts and the recovery
# time. Bounded: every wait has a limit; about 30 s after the build. KEEP=1
# keeps the folder with the logs.
# Needs: the Debian package postgresql (initdb, pg_ctl, psql), root or the
# postgres user, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/pg_lib.sh
TIMEOUT=2           # leader-timeout (s)
PERIOD=3            # the short period of the service that stops (s)
MAX_ANSWER_MS=${MAX_ANSWER_MS:-10000}
# The reports' load: light, the machine runs the three servers and PostgreSQL.
LOAD=(-c 6 --pause-ms 20 --services 2 --servers-per-connection 5)
RATE=15             # alerts per second in the stream

cargo build --quiet --bin overc-server --example loadgen
T=${CARGO_TARGET_DIR:-$PWD/target}/debug
bin=$T/overc-server loadgen=$T/examples/loadgen

work=$(mktemp -d /tmp/overc-cluster.XXXXXX)
declare -a pid url
bg=()
cleanup() {
    # Nothing here may fail the script (set -e): the cluster must stop.
    for p in "${pid[@]}" "${bg[@]}"; do [[ -z "$p" ]] || kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pg_cleanup
    if [[ -n "${KEEP:-}" ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

pg_init "$work" fsync=off max_connections=300 || exit 1
pg_createdb overc_cluster
echo "PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (fsync off: a test cluster)"
q() { pg_psql overc_cluster -Atc "$1"; }

cat >"$work/server.ini" <<INI
[overc]
database = $(pg_url overc_cluster)
leader-timeout = $TIMEOUT
# Every report's history row stays, so that each can be found afterwards.
history-limit = 1000000

# A plugin takes the alert, then takes 2 s more to finish if it is the
# one to be in flight at the kill.
[alert:one]
command = /bin/sh -c 'echo "\$OVERC_ALERT_ID \$PPID \$(date +%s.%N)" >> "\$0"; case "\$OVERC_MESSAGE" in *flight*) sleep 2;; esac' $work/one.log
[alert:two]
command = /bin/sh -c 'echo "\$OVERC_ALERT_ID \$PPID \$(date +%s.%N)" >> "\$0"; case "\$OVERC_MESSAGE" in *flight*) sleep 2;; esac' $work/two.log
INI
touch "$work/one.log" "$work/two.log"
plugins=(--plugin "one=$work/one.log" --plugin "two=$work/two.log")

starts=0
start_one() { # start_one I: server I as a fresh process; sets pid[I], url[I]
    starts=$((starts + 1))
    # A log of its own: start_overc reads the address from the log's first line.
    start_overc "$bin" "$work/s$1.$starts.log" --config "$work/server.ini" || exit 1
    pid[$1]=$OVERC_PID url[$1]=$OVERC_URL
}
for i in 0 1 2; do start_one $i; done
urls=$(IFS=,; echo "${url[*]}")

leader_of() { # leader_of I: the index of the leader server I shows, or -1
    local l
    l=$(python3 scripts/cluster.py leader "${url[$1]}")
    for j in "${!url[@]}"; do
        if [[ -n "$l" && "http://$l" == "${url[$j]}" && -n "${pid[$j]}" ]]; then echo "$j"; return; fi
    done
    echo -1
}
alert_list() { # alert_list FILE: id, host, service, channel, event, message
    pg_psql overc_cluster -At -F $'\t' -c "SELECT a.id, coalesce(sv.name, ''), coalesce(se.name, ''),
        a.channel, a.event, a.message FROM alerts a LEFT JOIN servers sv ON sv.id = a.server_id
        LEFT JOIN services se ON se.id = a.service_id ORDER BY a.id" >"$1"
}
wait_delivered() { # wait_delivered SECONDS: every alert routed and delivered to both plugins
    local t0=$SECONDS left
    while :; do
        left=$(q "SELECT (SELECT count(*) FROM alerts WHERE NOT routed)
                  + (SELECT count(*) FROM deliveries WHERE state <> 1)
                  + (SELECT count(*) FROM alerts a WHERE (SELECT count(*) FROM deliveries d
                     WHERE d.alert_id = a.id) <> 2)" 2>/dev/null || echo '?')
        [[ $left == 0 ]] && return 0
        ((SECONDS - t0 > $1)) && fail "$left deliveries still undone after $1 s"
        sleep 0.5
    done
}
field() { sed -n "s|.* $1=\([^ ]*\).*|\1|p" <<<"$2"; }
loadgen() { # loadgen NAME SECONDS URLS: reports in the background, acknowledged ones to acks.NAME
    "$loadgen" --url "$3" "${LOAD[@]}" -d "$2" --prefix "$1" --ack-log "$work/acks.$1" >"$work/load.$1" &
    bg+=($!)
}
alerts() { # alerts NAME SECONDS: the alert stream in the background
    python3 scripts/cluster.py stream --urls "$urls" --prefix "$1" --rate "$RATE" \
        --duration "$2" --out "$work/stream.acks" >"$work/stream.$1" &
    bg+=($!)
}
wait_bg() { for p in "${bg[@]}"; do wait "$p" || fail "a load process failed"; done; bg=(); }

# 1. Normal operation.
leader=$(leader_of 0)
((leader >= 0)) || fail "no leader shown"
echo "== 1. normal operation: leader is server $leader (${url[$leader]})"
loadgen r1 4 "$urls"
alerts a1 4
wait_bg
echo "reports: $(cat "$work/load.r1")"
echo "alerts:  $(cat "$work/stream.a1")"
wait_delivered 30
alert_list "$work/alerts.1"
python3 scripts/cluster.py deliveries --alerts "$work/alerts.1" "${plugins[@]}" --max-dups 0 ||
    fail "normal operation: not every alert exactly once to each plugin"

# 2. kill -9 of the leader during the stream of alerts and reports.
echo "== 2. kill -9 of the leader during the stream"
loadgen r2 8 "$urls"
alerts a2 8
sleep 2
other=$(((leader + 1) % 3))
slow='{"server": {"name": "slow", "key": "k"}, "alerts": [{"message": "in flight at the kill"}]}'
curl -sf -o /dev/null "${url[$other]}/api/set/alerts" -d "$slow" || fail "alert to server $other"
flight=$(q "SELECT id FROM alerts WHERE message = 'in flight at the kill'")
t0=$SECONDS
until (($(awk -v id="$flight" '$1 == id' "$work/one.log" "$work/two.log" | wc -l) == 2)); do
    ((SECONDS - t0 > 10)) && fail "the leader did not start the plugins on alert $flight"
    sleep 0.05
done
quick='{"server": {"name": "quick", "key": "k"}, "period": '$PERIOD', "services": [{"name": "beat", "state": "OK"}]}'
curl -sf -o /dev/null "${url[$other]}/api/set/service/status" -d "$quick" || fail "report to server $other"
killed=${pid[$leader]}
t_kill=$(now)
# Waited for at once, quietly: bash would report the kill later.
{ kill -9 "$killed" && wait "$killed"; } 2>/dev/null || true
echo "$t_kill" >"$work/t_kill"
pid[$leader]=
survivor=$(((leader + 2) % 3))
until new=$(leader_of "$survivor") && ((new >= 0)); do
    awk -v s="$(since "$t_kill")" -v m="$TIMEOUT" 'BEGIN { exit !(s > m) }' &&
        fail "no server took over within leader-timeout ($TIMEOUT s)"
    sleep 0.1
done
takeover=$(since "$t_kill")
echo "takeover: server $new leads $takeover s after kill -9 of server $leader (leader-timeout $TIMEOUT s)"
limit=$((TIMEOUT + PERIOD + 5))
offline=
until [[ -n "$offline" ]] && (($(awk -v id="$offline" '$1 == id' "$work/one.log" "$work/two.log" | wc -l) >= 2)); do
    awk -v s="$(since "$t_kill")" -v m="$limit" 'BEGIN { exit !(s > m) }' &&
        fail "the offline alert of the stopped service did not reach both plugins within $limit s"
    offline=$(q "SELECT a.id FROM alerts a JOIN services s ON s.id = a.service_id
                 WHERE s.name = 'beat' AND a.event = 'offline'")
    sleep 0.2
done
for p in one two; do
    lines=$(awk -v id="$offline" '$1 == id' "$work/$p.log")
    at=$(awk -v k="$t_kill" 'NR == 1 { printf "%.1f", $3 - k }' <<<"$lines")
    awk -v s="$at" -v m="$limit" 'BEGIN { exit !(s > m) }' && fail "offline alert to $p $at s after the kill"
    echo "offline alert of the stopped service: plugin $p got it $at s after the kill (limit $limit s)"
    offline_at="${offline_at:+$offline_at, }$p $at s"
done
wait_bg
echo "reports: $(cat "$work/load.r2")"
echo "alerts:  $(cat "$work/stream.a2")"
wait_delivered 40
alert_list "$work/alerts.2"
python3 scripts/cluster.py deliveries --alerts "$work/alerts.2" "${plugins[@]}" \
    --max-dups 1 --killed-pid "$killed" --in-flight "$flight" | tee "$work/deliveries.2"
[[ ${PIPESTATUS[0]} == 0 ]] || fail "failover: an alert lost, or delivered twice without being in flight"
dups=$(sed -n 's/^duplicates: //p' "$work/deliveries.2")
for p in one two; do
    n=$(awk -v id="$flight" '$1 == id' "$work/$p.log" | wc -l)
    [[ $n == 2 ]] || fail "the alert in flight at the kill reached $p $n times, not 2 (killed and again)"
done
for p in one two; do
    n=$(awk -v id="$offline" '$1 == id' "$work/$p.log" | wc -l)
    [[ $n == 1 ]] || fail "the offline alert reached $p $n times"
done
echo "offline alert: exactly once to each plugin"

# 3. PostgreSQL stopped (immediate: its processes killed) under load.
echo "== 3. pg_ctl stop -m immediate under load"
start_one "$leader"
urls=$(IFS=,; echo "${url[*]}")
loadgen r3 14 "$urls"
sleep 3
pg_stop immediate
t_down=$(now)
report='{"server": {"name": "probe", "key": "k"}, "period": 3600, "services": [{"name": "p", "state": "OK"}]}'
for i in 0 1 2; do
    a=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 "${url[$i]}/api/set/service/status" -d "$report" || true)
    r=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 30 "${url[$i]}/ui/api/status/" || true)
    echo "PostgreSQL down: server $i answers a report ${a% *} in ${a#* } s, a read ${r% *} in ${r#* } s"
    [[ ${a% *} == 503 && ${r% *} == 503 ]] || fail "server $i: not 503 while PostgreSQL is down"
done
sleep 2
pg_start
t_up=$(now)
echo "PostgreSQL back after $(awk -v a="$t_down" -v b="$t_up" 'BEGIN { printf "%.1f", b - a }') s"
for i in 0 1 2; do
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${url[$i]}/api/set/service/status" -d "$report") == 200 ]]; do
        awk -v s="$(since "$t_up")" 'BEGIN { exit !(s > 15) }' && fail "server $i: no 200 within 15 s of PostgreSQL's return"
        sleep 0.2
    done
    curl -sf -o /dev/null "${url[$i]}/ui/api/status/" || fail "server $i: reads after PostgreSQL came back"
done
recovery=$(since "$t_up")
echo "recovered: all three answer 200 again $recovery s after PostgreSQL's return, without a restart"
wait_bg
r=$(cat "$work/load.r3")
echo "reports: $r"
codes=$(field codes "$r")
n503=$(tr ',' '\n' <<<"$codes" | sed -n 's/^503://p')
[[ -n "$n503" ]] || fail "no 503 under load while PostgreSQL was down ($codes)"
[[ -z "$(tr ',' '\n' <<<"$codes" | grep -v '^200:\|^503:')" ]] || fail "answers other than 200 and 503: $codes"
[[ $(field errors "$r") == 0 ]] || fail "connection errors while PostgreSQL was down"
awk -v m="$(field max_ms "$r")" -v b="$MAX_ANSWER_MS" 'BEGIN { exit !(m > b) }' &&
    fail "an answer took $(field max_ms "$r") ms, over $MAX_ANSWER_MS"
echo "PostgreSQL down under load: $n503 answers 503, the slowest answer $(field max_ms "$r") ms (limit $MAX_ANSWER_MS)"
slowest=$(field max_ms "$r")
t0=$SECONDS
until new=$(leader_of 0) && ((new >= 0)); do
    ((SECONDS - t0 > 15)) && fail "no leader after PostgreSQL came back"
    sleep 0.2
done
body='{"server": {"name": "after", "key": "k"}, "alerts": [{"message": "after the return"}]}'
curl -sf -o /dev/null "${url[$new]}/api/set/alerts" -d "$body" || fail "alert after the return"
wait_delivered 30
alert_list "$work/alerts.3"
python3 scripts/cluster.py deliveries --alerts "$work/alerts.3" "${plugins[@]}" \
    --max-dups 1 --killed-pid "$killed" --in-flight "$flight" >"$work/deliveries.3" || { cat "$work/deliveries.3"; fail "deliveries after the return"; }
after=$(q "SELECT id FROM alerts WHERE message = 'after the return'")
for p in one two; do
    n=$(awk -v id="$after" '$1 == id' "$work/$p.log" | wc -l)
    [[ $n == 1 ]] || fail "the alert after the return reached $p $n times"
done
echo "after the return: server $new leads and delivers (an alert reached each plugin once)"

# Every report and alert acknowledged with 200, in all three phases, is there.
cat "$work"/acks.r* >"$work/acks"
missing=$(pg_psql overc_cluster -At -c "CREATE TEMP TABLE acked(host text, info text)" \
    -c "\\copy acked FROM '$work/acks'" \
    -c "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM servers sv
            JOIN services se ON se.server_id = sv.id JOIN states st ON st.service_id = se.id
            WHERE sv.name = k.host AND se.name = 'disk' AND st.info = k.info)) FROM acked k")
echo "reports: ${missing%|*} acknowledged with 200 over the run, ${missing#*|} missing from the database"
[[ ${missing#*|} == 0 && ${missing%|*} -gt 0 ]] || fail "acknowledged reports are missing"
alert_list "$work/alerts.final"
python3 scripts/cluster.py acked --acks "$work/stream.acks" --alerts "$work/alerts.final" ||
    fail "acknowledged alerts are missing"
for i in 0 1 2; do kill "${pid[$i]}"; wait "${pid[$i]}" 2>/dev/null || true; pid[$i]=; done
echo "== e2e-cluster: takeover $takeover s (leader-timeout $TIMEOUT s); offline alert after the kill: $offline_at;"
echo "   alerts delivered twice: $dups (the one in flight at the kill); PostgreSQL down: $n503 answers 503,"
echo "   slowest answer $slowest ms, 200 again $recovery s after its return; ${missing%|*} reports and"
echo "   $(wc -l <"$work/stream.acks") alerts acknowledged, none missing"
echo "OK"
