#!/usr/bin/env bash
# overcli with real Nagios plugins against a real overc-server.
# Needs: Debian's monitoring-plugins-basic (check_dummy, check_load,
# check_disk, check_procs in /usr/lib/nagios/plugins), curl and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
P=/usr/lib/nagios/plugins
[[ -x $P/check_dummy ]] || { echo "needs monitoring-plugins-basic (apt-get install monitoring-plugins-basic)"; exit 1; }
cargo build --quiet --bin overc-server --bin overcli
server_bin="$PWD/target/debug/overc-server"
overcli="$PWD/target/debug/overcli"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cd "$work"
start_overc "$server_bin" "$work/server.log"
pids+=("$OVERC_PID")
url=$OVERC_URL

cat > monitor.ini <<INI
[overc]
server = $url
my-name = nagios-host
my-key = secret

[service:dummy-ok]
period = 5
command = $P/check_dummy 0 "all good"
[service:dummy-warn]
period = 5
command = $P/check_dummy 1 "getting warm"
[service:dummy-crit]
period = 5
command = $P/check_dummy 2 "on fire"
[service:dummy-unknown]
period = 5
command = $P/check_dummy 3 "no idea"
[service:load]
period = 5
command = $P/check_load -w 1000,1000,1000 -c 2000,2000,2000
[service:disk]
period = 5
command = $P/check_disk -w 1% -c 1% -p /
[service:procs]
period = 5
command = $P/check_procs -w 100000 -c 200000
INI

# check: a table, the worst code by the Nagios order (CRITICAL = 2 beats
# UNKNOWN = 3), nothing sent.
set +e
table=$("$overcli" check monitor.ini)
rc=$?
set -e
[[ $rc == 2 ]] || fail "check exited $rc, expected 2: $table"
grep -Eq '^dummy-warn +WARN .*WARNING: getting warm$' <<<"$table" || fail "check table: $table"
grep -Eq '^load +OK .*LOAD OK' <<<"$table" || fail "check table: $table"
[[ $(curl -s "$url/ui/api/status/") == *'"servers":[]'* ]] || fail "check sent something"

# monitor: the states, infos and perfdata arrive.
"$overcli" monitor monitor.ini 2>"$work/monitor.log" &
mon=$!
pids+=($mon)
for _ in $(seq 300); do
    n=$(curl -s "$url/ui/api/status/" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(1 for s in d["servers"] for v in s["services"] if v["state"]))')
    [[ $n == 7 ]] && break
    sleep 0.1
done
[[ $n == 7 ]] || fail "only $n of 7 services arrived: $(cat "$work/monitor.log")"

curl -s "$url/ui/api/status/" > status.json
python3 - status.json <<'PY' || fail "unexpected states: $(cat status.json)"
import json, sys
d = json.load(open(sys.argv[1]))
host, = [s for s in d["servers"] if s["name"] == "nagios-host"]
svc = {v["name"]: v for v in host["services"]}
def st(n): return svc[n]["state"]
expect = {"dummy-ok": ("OK", "OK: all good"), "dummy-warn": ("WARN", "WARNING: getting warm"),
          "dummy-crit": ("FAIL", "CRITICAL: on fire"), "dummy-unknown": ("UNK", "UNKNOWN: no idea")}
for name, (state, info) in expect.items():
    assert st(name)["state"] == state, (name, st(name))
    assert st(name)["info"] == info, (name, st(name))
    assert svc[name]["period"] == 5
assert st("load")["state"] == "OK" and st("load")["info"].startswith("LOAD OK"), st("load")
labels = [p["label"] for p in st("load")["perfdata"]]
assert labels == ["load1", "load5", "load15"], labels
assert st("load")["perfdata"][0]["warn"]["end"] == 1000.0, st("load")["perfdata"][0]
assert st("disk")["state"] in ("OK", "WARN", "FAIL"), st("disk")
disk = st("disk")["perfdata"][0]
assert disk["label"] == "/" and disk["uom"] in ("B", "MB", "MiB") and disk["value"] > 0, disk
procs = st("procs")["perfdata"]
assert procs[0]["label"] == "procs" and procs[0]["value"] > 0, procs
PY

kill -TERM "$mon"
wait "$mon" || fail "overcli monitor did not exit 0 on SIGTERM"
echo "e2e-nagios: ok"
