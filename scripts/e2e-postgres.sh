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
# fails saying so; and two overc-server processes on one database: kill -9
# of the leader, and the other takes over within leader-timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x "$PGBIN/initdb" ]] || { echo "FAIL: no PostgreSQL (initdb) found; install the package postgresql"; exit 1; }
TESTS=${TESTS:-"engine:: policy:: silences:: supervision:: read_api:: storage:: registration:: postgres"}

work=$(mktemp -d /tmp/overc-pg.XXXXXX)
chmod 755 "$work"
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ $(id -u) == 0 ]]; then chown postgres "$work"; fi
started= a_pid= b_pid= t_pid=
cleanup() {
    # Nothing here may fail the script (set -e): the cluster must stop.
    [[ -z "$a_pid" ]] || kill -9 "$a_pid" 2>/dev/null || true
    [[ -z "$t_pid" ]] || kill "$t_pid" 2>/dev/null || true
    [[ -z "$b_pid" ]] || kill "$b_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    [[ -n "$started" ]] && as_pg "$PGBIN/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
password=overc-e2e-$RANDOM$RANDOM
echo "$password" >"$work/pw"
[[ $(id -u) == 0 ]] && chown postgres "$work/pw"
as_pg "$PGBIN/initdb" -D "$work/data" -U overc --pwfile="$work/pw" -A scram-sha-256 \
    --no-sync -E UTF8 --locale=C.UTF-8 >"$work/initdb.log" 2>&1 ||
    { cat "$work/initdb.log"; echo "FAIL: initdb"; exit 1; }
# TLS with the test certificate: PostgreSQL wants its key owned by it, 0600.
install -m 0644 tests/tls/server.pem "$work/server.pem"
install -m 0600 tests/tls/server.key "$work/server.key"
[[ $(id -u) == 0 ]] && chown postgres "$work/server.pem" "$work/server.key"
# Made for tests: no fsync (the cluster is thrown away), many connections.
pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
        -o "-p $port -k $work -h 127.0.0.1 -c fsync=off -c max_connections=300 -c ssl=on -c ssl_cert_file=$work/server.pem -c ssl_key_file=$work/server.key" start >/dev/null
}
pg_start || { cat "$work/pg.log"; echo "FAIL: pg_ctl start"; exit 1; }
started=1
url="postgres://overc:$password@127.0.0.1:$port/postgres"
version=$(PGPASSWORD=$password "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U overc -d postgres -Atc 'SHOW server_version' 2>/dev/null || echo '?')
echo "PostgreSQL $version on 127.0.0.1:$port"

# Two overc-server processes on one database: the first leads; kill -9 of
# it, and the second takes over within leader-timeout.
failover() {
    PGPASSWORD=$password "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U overc overc_failover
    cargo build --quiet --bin overc-server
    local bin="$PWD/target/debug/overc-server" db="postgres://overc:$password@127.0.0.1:$port/overc_failover"
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
    as_pg "$PGBIN/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null
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

# TLS to PostgreSQL: overc-server with sslmode=require, and with
# verify-full against the test CA (the certificate names 127.0.0.1), starts
# and takes a report; verify-full against another CA stops at start saying
# that the certificate did not verify.
tls() {
    PGPASSWORD=$password "$PGBIN/createdb" -h 127.0.0.1 -p "$port" -U overc overc_tls
    cargo build --quiet --bin overc-server
    local bin="$PWD/target/debug/overc-server" db="postgres://overc:$password@127.0.0.1:$port/overc_tls"
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
        ssl=$(PGPASSWORD=$password "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U overc -d postgres -Atc \
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
failover || exit 1
echo "OK"
