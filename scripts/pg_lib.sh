# A throwaway PostgreSQL cluster for the scripts in this folder; `source` it.
# Needs the Debian package postgresql (initdb, pg_ctl, psql) and root (the
# cluster then runs as the `postgres` user) or the postgres user itself.
#
#   pg_init WORK [SERVER OPTION...]   initdb in WORK/data, start on a free
#                                     loopback port with `-c` options such as
#                                     fsync=off; sets PG_URL (database postgres),
#                                     PG_PORT, PG_PASSWORD, PG_VERSION
#   pg_url DB                         the URL of database DB on the cluster
#   pg_createdb DB                    creates database DB
#   pg_psql DB ARGS...                psql on DB as the cluster's owner
#   pg_stop [MODE]                    pg_ctl stop -m MODE (default fast)
#   pg_start                          starts it again, with the same options
#   pg_cleanup                        stops it if it runs; never fails (for traps)
#
# The cluster's files live in WORK, which the caller removes.

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
PG_WORK= PG_PORT= PG_PASSWORD= PG_URL= PG_VERSION= PG_RUNNING=
PG_OPTS=()

# Runs a command as the cluster's owner.
as_pg() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_init() {
    PG_WORK=$1
    shift
    [[ -x "$PGBIN/initdb" ]] || { echo "FAIL: no PostgreSQL (initdb) found; install the package postgresql"; return 1; }
    chmod 755 "$PG_WORK"
    [[ $(id -u) == 0 ]] && chown postgres "$PG_WORK"
    PG_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PG_PASSWORD=overc-e2e-$RANDOM$RANDOM
    echo "$PG_PASSWORD" >"$PG_WORK/pw"
    [[ $(id -u) == 0 ]] && chown postgres "$PG_WORK/pw"
    as_pg "$PGBIN/initdb" -D "$PG_WORK/data" -U overc --pwfile="$PG_WORK/pw" -A scram-sha-256 \
        --no-sync -E UTF8 --locale=C.UTF-8 >"$PG_WORK/initdb.log" 2>&1 ||
        { cat "$PG_WORK/initdb.log"; echo "FAIL: initdb"; return 1; }
    PG_OPTS=()
    for o in "$@"; do PG_OPTS+=(-c "$o"); done
    pg_start || return 1
    PG_URL=$(pg_url postgres)
    PG_VERSION=$(pg_psql postgres -Atc 'SHOW server_version' 2>/dev/null || echo '?')
}

pg_start() {
    as_pg "$PGBIN/pg_ctl" -D "$PG_WORK/data" -l "$PG_WORK/pg.log" -w \
        -o "-p $PG_PORT -k $PG_WORK -h 127.0.0.1 ${PG_OPTS[*]}" start >/dev/null ||
        { cat "$PG_WORK/pg.log"; echo "FAIL: pg_ctl start"; return 1; }
    PG_RUNNING=1
}

pg_stop() {
    as_pg "$PGBIN/pg_ctl" -D "$PG_WORK/data" -m "${1:-fast}" -w stop >/dev/null
    PG_RUNNING=
}

pg_cleanup() {
    if [[ -n "$PG_RUNNING" ]]; then pg_stop fast 2>/dev/null || true; fi
    return 0
}

pg_url() { echo "postgres://overc:$PG_PASSWORD@127.0.0.1:$PG_PORT/$1"; }

pg_createdb() { PGPASSWORD=$PG_PASSWORD "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U overc "$1"; }

pg_psql() {
    local db=$1
    shift
    PGPASSWORD=$PG_PASSWORD "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U overc -d "$db" "$@"
}
