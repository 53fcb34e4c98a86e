#!/usr/bin/env bash
# A server that did not run (SIGSTOP, a suspended VM) does not blame the
# hosts: while it is stopped for PAUSE seconds, hosts keep trying to report
# services with a 3 s period; after SIGCONT no `plugin/offline` alert may be
# raised, and a host that really goes silent still is. About 25 s.
# Needs: curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PAUSE=${PAUSE:-8}
cargo build --quiet --bin overc-server
bin="$PWD/target/debug/overc-server"
work=$(mktemp -d)
pid= loops=()
cleanup() {
    [[ ${#loops[@]} -gt 0 ]] && kill "${loops[@]}" 2>/dev/null
    [[ -n "$pid" ]] && { kill -CONT "$pid"; kill "$pid"; } 2>/dev/null
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }
count_offline() { curl -sf "$url/ui/api/status/alerts/" | { grep -o '"event":"offline"' || true; } | wc -l; }

cd "$work"
start_overc "$bin" "$work/log"
pid=$OVERC_PID url=$OVERC_URL

report() {
    curl -s --max-time 2 -o /dev/null "$url/api/set/service/status" \
        -d "{\"server\": {\"name\": \"host$1\", \"key\": \"k\"}, \"period\": 3,
             \"services\": [{\"name\": \"app\", \"state\": \"OK\"}]}" || true
}
# Hosts report every second and give up on a request after 2 s.
for h in $(seq 10); do
    (while :; do report "$h"; sleep 1; done) &
    loops+=($!)
done
sleep 3
kill -STOP "$pid"
echo "server stopped for $PAUSE s while 10 hosts keep trying"
sleep "$PAUSE"
kill -CONT "$pid"
sleep 5
offline=$(count_offline)
[[ $offline -eq 0 ]] || fail "$offline plugin/offline alerts after the pause:
$(curl -sf "$url/ui/api/status/alerts/")"
grep -q "did not run for" "$work/log" || fail "the pause was not noticed: $(tail -5 "$work/log")"

# Not vacuous: a host that really goes silent is reported.
kill "${loops[0]}"
wait "${loops[0]}" 2>/dev/null || true
loops=("${loops[@]:1}")
for _ in $(seq 100); do
    offline=$(count_offline)
    [[ $offline -ge 1 ]] && break
    sleep 0.1
done
[[ $offline -eq 1 ]] || fail "expected one offline alert for the silent host, got $offline"
echo "e2e-pause: ok (no false alert after a $PAUSE s stop; a silent host still alerted)"
