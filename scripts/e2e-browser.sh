#!/usr/bin/env bash
# The web page in a real browser: headless Chromium against a real server with
# data pushed through the real API. Screenshots go to $OUT (default
# target/e2e-browser); UPDATE_DOCS=1 copies the services page to docs/.
# Needs: Debian's chromium, python3, curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# .ci/run installs chromium when CI=true, so there a missing one is a failure;
# elsewhere the check is skipped with the reason.
if ! command -v chromium >/dev/null; then
    echo "e2e-browser: skipped: needs chromium (apt-get install chromium)"
    [[ "${CI:-}" == "true" ]] && exit 1
    exit 0
fi
cargo build --quiet --bin overc-server
repo=$PWD
bin="$repo/target/debug/overc-server"
out="${OUT:-$PWD/target/e2e-browser}"
work=$(mktemp -d)
pid= login_pid=
cleanup() {
    [[ -n "$pid" ]] && kill "$pid" 2>/dev/null
    [[ -n "$login_pid" ]] && kill "$login_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

cd "$work"
start_overc "$bin" "$work/log"
pid=$OVERC_PID url=$OVERC_URL

push() { curl -sf "$url/api/set/service/status" -d "$1" > /dev/null; }
for i in 1 2 3 4 5; do
    push '{"server": {"name": "web1", "key": "k1"}, "period": 60, "services": [
      {"name": "load", "state": "OK", "info": "LOAD OK - load average: 0.'$i'2 | load1=0.'$i'2;4;8;0 load5=0.30;3;6;0"},
      {"name": "disk", "state": "OK", "info": "DISK OK - free space: / 3326 MB (56%) | /=2643MB;5948;5958;0;5968"},
      {"name": "nginx", "state": "OK", "info": "PROCS OK: 4 processes"}]}'
done
push '{"server": {"name": "db1", "key": "k2"}, "period": 1, "services": [
  {"name": "postgres", "state": "FAIL", "info": "CRITICAL - connection refused"}]}'
push '{"server": {"name": "db1", "key": "k2"}, "period": 60, "services": [
  {"name": "backup", "state": "WARN", "info": "last backup 30 h ago"}]}'
curl -sf "$url/api/set/alerts" -d '{"server": {"name": "db1", "key": "k2"},
  "alerts": [{"message": "backup failed: tape full", "service": "backup"}]}' > /dev/null
# postgres promised a report within 1 s: wait until the supervisor calls it offline.
for _ in $(seq 100); do
    curl -s "$url/ui/api/status/alerts/" | grep -q 'Monitoring plugin offline' && break
    sleep 0.1
done

# A second server with a login, for the page opened as http://user:pass@host/.
mkdir "$work/login" && cd "$work/login"
printf '[ui]\nusername = admin\npassword = secret\n' > server.ini
start_overc "$bin" "$work/login/log" --config server.ini
login_pid=$OVERC_PID
curl -sf "$OVERC_URL/api/set/service/status" -d '{"server": {"name": "web1", "key": "k1"}, "period": 60,
  "services": [{"name": "load", "state": "OK", "info": "LOAD OK - load average: 0.12"}]}' > /dev/null
cd "$work"

LOGIN_URL="${OVERC_URL/http:\/\//http://admin:secret@}" \
    python3 "$repo/scripts/browser_test.py" "$url" "$out" "$pid"
# The test stopped the server to see the page notice.
wait "$pid" 2>/dev/null || true
pid=
if [[ "${UPDATE_DOCS:-}" == 1 ]]; then
    cp "$out/services.png" "$repo/docs/services.png"
fi
