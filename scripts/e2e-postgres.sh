#!/usr/bin/env bash
# One suite, two backends (SPEC §10): starts a throwaway PostgreSQL cluster
# (initdb in a temporary folder, run as the `postgres` user, on a free
# loopback port), runs the store and engine tests against it through
# OVERC_TEST_POSTGRES, stops the cluster and prints a summary. The cluster
# has TLS on (ssl = on, with the certificate of tests/tls for 127.0.0.1 and
# localhost), so connections use it as their sslmode says.
# Needs: the Debian package postgresql (initdb, pg_ctl), and root or the
# postgres user, curl; openssl for a wrong CA (else the system's bundle
# stands for one). TESTS selects the tests (default: the suites of §10).
# Then overc-server with sslmode=require and with verify-full against the
# test CA start and take a report, and verify-full against another CA
# fails saying so; `overc-server copy`: an installation made on SQLite
# copied to PostgreSQL and back, the status API the same on each; and two
# overc-server processes on one database: kill -9 of the leader, and the
# other takes over within leader-timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
source scripts/pg_lib.sh
TESTS=${TESTS:-"engine:: policy:: supervision:: read_api:: storage:: silences:: registration:: copy:: postgres"}

work=$(mktemp -d /tmp/overc-pg.XXXXXX)
a_pid= b_pid= c_pid= t_pid=
cleanup() {
    # Nothing here may fail the script (set -e): the cluster must stop.
    [[ -z "$a_pid" ]] || kill -9 "$a_pid" 2>/dev/null || true
    [[ -z "$b_pid" ]] || kill "$b_pid" 2>/dev/null || true
    [[ -z "$c_pid" ]] || kill "$c_pid" 2>/dev/null || true
    [[ -z "$t_pid" ]] || kill "$t_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    pg_cleanup
    rm -rf "$work"
}
trap cleanup EXIT

# TLS with the test certificate: PostgreSQL wants its key owned by it, 0600.
install -m 0644 tests/tls/server.pem "$work/server.pem"
install -m 0600 tests/tls/server.key "$work/server.key"
[[ $(id -u) == 0 ]] && chown postgres "$work/server.pem" "$work/server.key"
# Made for tests: no fsync (the cluster is thrown away), many connections.
pg_init "$work" fsync=off max_connections=300 ssl=on \
    "ssl_cert_file=$work/server.pem" "ssl_key_file=$work/server.key" || exit 1
url=$PG_URL password=$PG_PASSWORD port=$PG_PORT version=$PG_VERSION
echo "PostgreSQL $version on 127.0.0.1:$port"

# Two overc-server processes on one database: the first leads; kill -9 of
# it, and the second takes over within leader-timeout.
failover() {
    pg_createdb overc_failover
    cargo build --quiet --bin overc-server
    local bin="$PWD/target/debug/overc-server" db=$(pg_url overc_failover)
    pushd "$work" >/dev/null
    # Every server has the same alert plugin, appending to one file: what
    # any leader delivered.
    cat >"$work/server.ini" <<INI
[alert:log]
command = /bin/sh -c 'cat >> "\$0"; echo >> "\$0"' $work/alerts.log
INI
    export OVERC_DATABASE=$db OVERC_LEADER_TIMEOUT=2
    start_overc "$bin" "$work/a.log" --config "$work/server.ini"
    a_pid=$OVERC_PID a_url=$OVERC_URL
    start_overc "$bin" "$work/b.log" --config "$work/server.ini"
    b_pid=$OVERC_PID b_url=$OVERC_URL
    unset OVERC_DATABASE OVERC_LEADER_TIMEOUT
    popd >/dev/null
    if grep -q hunter2 "$work/a.log" || grep -qF "$password" "$work/a.log"; then
        echo "FAIL: the password is in the log"; return 1
    fi
    leader() { curl -sf "$1/ui/api/status/" | python3 -c 'import json,sys; print((json.load(sys.stdin)["stats"].get("leader") or {}).get("listen",""))'; }
    local body='{"server": {"name": "h", "key": "k"}, "period": 60, "services": [{"name": "s", "state": "OK"}]}'
    # A service with a 3 s period, reported to B, that stops when A dies.
    local quick='{"server": {"name": "q", "key": "k"}, "period": 3, "services": [{"name": "beat", "state": "OK"}]}'
    curl -sf -o /dev/null "$b_url/api/set/service/status" -d "$quick" || { echo "FAIL: report to B"; return 1; }
    curl -sf -o /dev/null "$b_url/api/set/service/status" -d "$body" || { echo "FAIL: report to B"; return 1; }
    [[ "http://$(leader "$b_url")" == "$a_url" ]] || { echo "FAIL: B shows leader $(leader "$b_url"), not A ($a_url)"; return 1; }
    kill -9 "$a_pid"
    wait "$a_pid" 2>/dev/null || true
    a_pid=
    local t0=$SECONDS
    until [[ "http://$(leader "$b_url")" == "$b_url" ]]; do
        if ((SECONDS - t0 > 2 + 3)); then echo "FAIL: no takeover within leader-timeout"; cat "$work/b.log"; return 1; fi
        sleep 0.2
    done
    echo "failover: B ($b_url) took over $((SECONDS - t0)) s after kill -9 of the leader A"
    # Its offline alert comes once, from the new leader, within
    # leader-timeout + period + 5 s of the kill.
    until grep -q 'q beat: \[plugin/offline\]' "$work/alerts.log" 2>/dev/null; do
        if ((SECONDS - t0 > 2 + 3 + 5)); then echo "FAIL: no offline alert from the new leader"; return 1; fi
        sleep 0.2
    done
    sleep 2
    local n
    n=$(grep -c 'q beat: \[plugin/offline\]' "$work/alerts.log")
    [[ $n == 1 ]] || { echo "FAIL: the offline alert was delivered $n times"; cat "$work/alerts.log"; return 1; }
    echo "overdue after the failover: delivered once, $((SECONDS - t0 - 2)) s after the kill"
    curl -sf -o /dev/null "$b_url/api/set/service/status" -d "$body" || { echo "FAIL: report to B after the failover"; return 1; }
    # PostgreSQL itself dies: 503 while it is down, 200 again by itself.
    pg_stop immediate
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$b_url/api/set/service/status" -d "$body")
    [[ $code == 503 ]] || { echo "FAIL: $code, not 503, while PostgreSQL is down"; return 1; }
    pg_start
    t0=$SECONDS
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$b_url/api/set/service/status" -d "$body") == 200 ]]; do
        if ((SECONDS - t0 > 15)); then echo "FAIL: no recovery after PostgreSQL came back"; tail "$work/b.log"; return 1; fi
        sleep 0.2
    done
    curl -sf -o /dev/null "$b_url/ui/api/status/" || { echo "FAIL: reads after PostgreSQL came back"; curl -s "$b_url/ui/api/status/"; tail -20 "$work/b.log"; return 1; }
    echo "PostgreSQL down: 503; back: 200 again after $((SECONDS - t0)) s"
    kill "$b_pid"; wait "$b_pid" 2>/dev/null || true
    b_pid=
}

# `overc-server copy`: hosts report to a server on SQLite (one silences
# itself); stopped, its database is copied to PostgreSQL, where a server
# shows the same status and takes the hosts' keys (a wrong one: 403); then
# copied back to a new SQLite file, shown the same again.
copy_e2e() {
    pg_createdb overc_copy
    cargo build --quiet --bin overc-server
    local bin="$PWD/target/debug/overc-server" dir="$work/copy"
    local db
    db=$(pg_url overc_copy)
    mkdir -p "$dir"
    pushd "$dir" >/dev/null
    # The status without what moves with time or differs by server (the
    # leader).
    status() {
        curl -sf "$1/ui/api/status/" | python3 -c '
import json, sys
def strip(v):
    if isinstance(v, dict):
        return {k: strip(x) for k, x in v.items()
                if k not in ("seen_ago", "supervisor_lag", "leader")}
    return [strip(x) for x in v] if isinstance(v, list) else v
print(json.dumps(strip(json.load(sys.stdin)), sort_keys=True))'
    }
    run_on() { start_overc "$bin" "$dir/$2.log" --database "$1"; c_pid=$OVERC_PID; }
    stop() { kill "$c_pid"; wait "$c_pid" 2>/dev/null || true; c_pid=; }
    send() {
        curl -sf -o /dev/null "$OVERC_URL/api/set/service/status" -d "{\"server\": {\"name\": \"$1\", \"key\": \"$2\"}, \"period\": 3600, \"services\": [{\"name\": \"$3\", \"state\": \"$4\", \"info\": \"$3 is $4\"}]}"
    }
    run_on "$dir/source.db" source
    send web k-web http OK && send web k-web http FAIL && send db k-db pg OK && send db k-db pg WARN ||
        { echo "FAIL: reports to the SQLite server"; return 1; }
    curl -sf -o /dev/null "$OVERC_URL/api/set/silence" \
        -d '{"server": {"name": "db", "key": "k-db"}, "duration": 3600, "comment": "upgrade"}' ||
        { echo "FAIL: a host silence"; return 1; }
    local before after back
    before=$(status "$OVERC_URL")
    # Functions under `||` run without set -e: check what was read.
    [[ $before == *'"name": "web"'* && $before == *'"state": "FAIL"'* ]] ||
        { echo "FAIL: no status from the SQLite server: $before"; return 1; }
    stop
    "$bin" copy --from "$dir/source.db" --to "$db" >"$dir/to-pg.out" 2>"$dir/to-pg.err" ||
        { echo "FAIL: copy to PostgreSQL"; cat "$dir/to-pg.err"; return 1; }
    if grep -qF "$password" "$dir/to-pg.out" "$dir/to-pg.err"; then
        echo "FAIL: the password in the output of copy"; return 1
    fi
    if "$bin" copy --from "$dir/source.db" --to "$db" 2>"$dir/again.err"; then
        echo "FAIL: a second copy into the same database was not refused"; return 1
    fi
    grep -q "already holds data" "$dir/again.err" || { echo "FAIL: refusal says"; cat "$dir/again.err"; return 1; }
    run_on "$db" pg
    after=$(status "$OVERC_URL")
    [[ "$after" == "$before" ]] || { echo "FAIL: the status on PostgreSQL differs"; echo "$before"; echo "$after"; return 1; }
    send web k-web http OK || { echo "FAIL: the copied key of web was refused on PostgreSQL"; return 1; }
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "$OVERC_URL/api/set/service/status" \
        -d '{"server": {"name": "web", "key": "k-db"}, "period": 3600, "services": [{"name": "http", "state": "OK"}]}')
    [[ $code == 403 ]] || { echo "FAIL: a wrong key got $code on PostgreSQL, not 403"; return 1; }
    after=$(status "$OVERC_URL")
    [[ $after == *'"name": "db"'* && $after != "$before" ]] ||
        { echo "FAIL: the report with the copied key is not in the status: $after"; return 1; }
    stop
    "$bin" copy --from "$db" --to "sqlite:$dir/back.db" >"$dir/back.out" 2>"$dir/back.err" ||
        { echo "FAIL: copy back to SQLite"; cat "$dir/back.err"; return 1; }
    run_on "$dir/back.db" back
    back=$(status "$OVERC_URL")
    [[ "$back" == "$after" ]] || { echo "FAIL: the status copied back differs"; echo "$after"; echo "$back"; return 1; }
    stop
    popd >/dev/null
    echo "copy: SQLite -> PostgreSQL -> SQLite, the same status each time ($(cat "$dir/back.out"))"
}

# TLS to PostgreSQL: overc-server with sslmode=require, and with
# verify-full against the test CA (the certificate names 127.0.0.1), starts
# and takes a report; verify-full against another CA stops at start saying
# that the certificate did not verify.
tls() {
    pg_createdb overc_tls
    cargo build --quiet --bin overc-server
    local bin="$PWD/target/debug/overc-server" db
    db=$(pg_url overc_tls)
    local ca="$PWD/tests/tls/ca.pem" wrong="$work/wrong-ca.pem" body mode n=0
    body='{"server": {"name": "tls", "key": "k"}, "period": 60, "services": [{"name": "s", "state": "OK"}]}'
    for mode in "sslmode=require" "sslmode=verify-full&sslrootcert=$ca"; do
        n=$((n + 1))
        start_overc "$bin" "$work/tls-$n.log" --database "$db?$mode&application_name=overc_tls" ||
            { echo "FAIL: overc-server with $mode did not start"; return 1; }
        t_pid=$OVERC_PID
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' "$OVERC_URL/api/set/service/status" -d "$body")
        [[ $code == 200 ]] || { echo "FAIL: $code, not 200, for a report with $mode"; cat "$work/tls-$n.log"; return 1; }
        local ssl
        ssl=$(pg_psql postgres -Atc \
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'overc_tls'")
        [[ $ssl == t ]] || { echo "FAIL: the connections with $mode are not all TLS ($ssl)"; return 1; }
        kill "$t_pid"; wait "$t_pid" 2>/dev/null || true
        t_pid=
        echo "TLS: overc-server with ${mode%%&*} started and stored a report over TLS"
    done
    if command -v openssl >/dev/null; then
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
            -subj "/CN=not the overc test CA" -keyout "$work/wrong-ca.key" -out "$wrong" 2>/dev/null
    else
        wrong=/etc/ssl/certs/ca-certificates.crt
    fi
    local code=0
    timeout 30 "$bin" --listen 127.0.0.1:0 --database "$db?sslmode=verify-full&sslrootcert=$wrong" \
        2>"$work/tls-wrong.log" || code=$?
    if [[ $code == 0 || $code == 124 ]] || ! grep -q "certificate verification failed" "$work/tls-wrong.log"; then
        echo "FAIL: verify-full against another CA (exit $code):"; cat "$work/tls-wrong.log"; return 1
    fi
    if grep -qF "$password" "$work/tls-wrong.log"; then echo "FAIL: the password is in the message"; return 1; fi
    echo "TLS: verify-full against another CA refused at start (exit $code): $(grep -o 'certificate verification failed.*' "$work/tls-wrong.log" | head -1)"
}

filters=()
for t in $TESTS; do filters+=("$t"); done
log="$work/test.log"
status=0
OVERC_TEST_POSTGRES=$url cargo test --quiet --test tests -- "${filters[@]}" 2>&1 | tee "$log" || status=$?
passed=$(grep -o '[0-9]* passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -o '[0-9]* failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "== e2e-postgres: $passed passed, $failed failed on PostgreSQL $version ($TESTS)"
if [[ $status != 0 || $failed != 0 || $passed == 0 ]]; then
    echo "FAIL: the suite failed on PostgreSQL"
    exit 1
fi
tls || exit 1
copy_e2e || exit 1
failover || exit 1
echo "OK"
