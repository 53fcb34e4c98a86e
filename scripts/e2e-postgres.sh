#!/usr/bin/env bash
# One suite, two backends (SPEC §10): starts a throwaway PostgreSQL cluster
# (initdb in a temporary folder, run as the `postgres` user, on a free
# loopback port), runs the store and engine tests against it through
# OVERC_TEST_POSTGRES, stops the cluster and prints a summary.
# Needs: the Debian package postgresql (initdb, pg_ctl), and root or the
# postgres user. TESTS selects the tests (default: the suites of §10).
set -euo pipefail
cd "$(dirname "$0")/.."
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[[ -x "$PGBIN/initdb" ]] || { echo "FAIL: no PostgreSQL (initdb) found; install the package postgresql"; exit 1; }
TESTS=${TESTS:-"engine:: policy:: supervision:: read_api:: storage:: registration:: postgres"}

work=$(mktemp -d /tmp/overc-pg.XXXXXX)
chmod 755 "$work"
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [[ $(id -u) == 0 ]]; then chown postgres "$work"; fi
started=
cleanup() {
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
# Made for tests: no fsync (the cluster is thrown away), many connections.
as_pg "$PGBIN/pg_ctl" -D "$work/data" -l "$work/pg.log" -w \
    -o "-p $port -k $work -h 127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null ||
    { cat "$work/pg.log"; echo "FAIL: pg_ctl start"; exit 1; }
started=1
url="postgres://overc:$password@127.0.0.1:$port/postgres"
version=$(PGPASSWORD=$password "$PGBIN/psql" -h 127.0.0.1 -p "$port" -U overc -d postgres -Atc 'SHOW server_version' 2>/dev/null || echo '?')
echo "PostgreSQL $version on 127.0.0.1:$port"

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
echo "OK"
