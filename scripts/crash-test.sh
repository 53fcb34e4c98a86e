#!/usr/bin/env bash
# Crash safety: kill -9 the server in the middle of a load, start it again on
# the same database, and check that every acknowledged report is there.
#   scripts/crash-test.sh                 # 5 runs, 4 s of load each
#   RUNS=10 LOAD_SECONDS=10 scripts/crash-test.sh
# Every report carries a unique info ("c<connection> n<sequence>"); loadgen
# logs the ones answered 200. After the restart, for every server the newest
# state must be the last acknowledged report or a later one (sent, committed,
# but not yet answered when the server died), and the history of each of its
# services must hold every acknowledged report.
# Needs: python3 (and curl-free: it reads the API with python).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
LOAD=${LOAD_SECONDS:-4}
cargo build --release --quiet --bin overc-server --example loadgen
R="$PWD/target/release"
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

start() {
    "$R/overc-server" --listen "127.0.0.1:$port" --database "$work/overc.db" 2>>"$work/server.log" &
    pid=$!
    for _ in $(seq 100); do
        grep -q "^overc-server listening on http://127.0.0.1:$port" "$work/server.log" 2>/dev/null && return
        sleep 0.05
    done
    echo "server did not start"; cat "$work/server.log"; exit 1
}

total=0
for run in $(seq "$RUNS"); do
    rm -f "$work"/overc.db* "$work/server.log" "$work/acks.txt"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    start
    "$R/examples/loadgen" --url "http://127.0.0.1:$port" -c 16 -d "$LOAD" --servers-per-connection 10 \
        --ack-log "$work/acks.txt" --prefix "r$run" > "$work/load.txt" &
    load=$!
    # Kill somewhere in the middle of the load.
    sleep "$(python3 -c "import random; print(round(random.uniform($LOAD * 0.3, $LOAD * 0.7), 2))")"
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
    wait "$load"
    start
    checked=$(python3 - "http://127.0.0.1:$port" "$work/acks.txt" <<'PY'
import json, sys, urllib.request
from collections import defaultdict
base, acks_file = sys.argv[1], sys.argv[2]
def get(path):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return json.load(r)
def seq(info):
    return int(info.split(" |")[0].split(" n")[1])
acked = defaultdict(list)
for line in open(acks_file):
    server, info = line.rstrip("\n").split("\t")
    acked[server].append(seq(info))
status = get("/ui/api/status/")
servers = {s["name"]: s for s in status["servers"]}
n = 0
for server, seqs in acked.items():
    if server not in servers:
        sys.exit(f"server {server} with {len(seqs)} acknowledged reports is missing")
    for svc in servers[server]["services"]:
        newest = seq(svc["state"]["info"])
        if newest < max(seqs):
            sys.exit(f"{server}/{svc['name']}: newest state n{newest} is older than the last acknowledged n{max(seqs)}")
        history = {seq(s["info"]) for s in get(f"/ui/api/status/service/{svc['id']}/states?hours=24")["states"]}
        lost = sorted(set(seqs) - history)
        if lost:
            sys.exit(f"{server}/{svc['name']}: acknowledged reports lost: {lost[:10]}")
    n += len(seqs)
print(n)
PY
)
    replayed=$(sed -n 's/.*recovered \([0-9]*\) groups of writes.*/\1/p' "$work/server.log" | tail -1)
    echo "run $run: killed mid-load ($(sed 's/.*requests=\([0-9]*\).*/\1 requests sent/' "$work/load.txt")); all $checked acknowledged reports found after restart (${replayed:-0} write groups run again from the redo log)"
    total=$((total + checked))
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "crash-test: ok ($RUNS runs, $total acknowledged reports checked)"
