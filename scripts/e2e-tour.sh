#!/usr/bin/env bash
# The README's tour against the real overc-server binary.
# Needs: curl (Debian package `curl`) and the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
cargo build --quiet --bin overc-server
bin="$PWD/target/debug/overc-server"
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cd "$work"
start_overc "$bin" "$work/log"
pid=$OVERC_PID url=$OVERC_URL

fail() { echo "FAIL: $*"; exit 1; }
expect() { # expect WHAT GOT
    [[ "$2" == *"$1"* ]] || fail "expected '$1' in: $2"
}

got=$(curl -s "$url/api/set/service/status" -d '{
  "server": {"name": "web1", "key": "s3cret"}, "period": 60,
  "services": [{"name": "nginx", "state": "OK", "info": "accepting connections"},
               {"name": "disk", "state": "WARN", "info": "DISK WARNING | /=81%;80;90"}]}')
expect '{"ok":1}' "$got"
got=$(curl -s "$url/api/set/alerts" -d '{"server": {"name": "web1", "key": "s3cret"},
  "alerts": [{"message": "disk replaced", "service": "disk"}]}')
expect '{"ok":1}' "$got"
got=$(curl -s "$url/ui/api/status/")
expect '"name":"nginx"' "$got"
expect '"state":"WARN"' "$got"
got=$(curl -s "$url/ui/api/status/alerts/")
expect '"message":"disk replaced"' "$got"
got=$(curl -s "$url/ui/api/status/service/1/states?groups=1")
expect '"info":"accepting connections"' "$got"
got=$(curl -s -w ' %{http_code}' "$url/api/ping" -d '{"server": {"name": "web1", "key": "guess"}}')
expect '{"error":"Invalid server key"} 403' "$got"

kill -TERM "$pid"
wait "$pid" || fail "server did not exit with status 0 on SIGTERM"
pid=
[[ -f "$work/overc.db" ]] || fail "no overc.db in the working directory"
echo "e2e-tour: ok"
