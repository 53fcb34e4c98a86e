#!/usr/bin/env bash
# The web page in a real browser: headless Chromium against a real server with
# data pushed through the real API (scripts/browser_test.py says what is
# checked), an accessibility check with axe-core (from the npm registry,
# cached in target/axe; skipped with the reason when npm or the registry is
# not there), then the render timing with 10,000 services
# (scripts/page_render.py; RENDER_SERVICES=0 skips it). Screenshots go to
# $OUT (default target/e2e-browser); UPDATE_DOCS=1 copies the README's to docs/.
# Needs: Debian's chromium, python3, curl; npm for the accessibility check.
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

# axe-core, pinned to its major version, installed once into target/axe.
axe="$repo/target/axe/node_modules/axe-core/axe.min.js"
if [[ ! -f "$axe" ]]; then
    if command -v npm >/dev/null; then
        mkdir -p "$repo/target/axe"
        npm install --silent --no-audit --no-fund --prefix "$repo/target/axe" axe-core@4 >/dev/null 2>&1 ||
            echo "e2e-browser: accessibility check skipped: npm could not install axe-core"
    else
        echo "e2e-browser: accessibility check skipped: needs npm (apt-get install npm) for axe-core"
    fi
fi
[[ -f "$axe" ]] && export AXE="$axe"

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

# Five servers whose names do not sort by state: the page must put zeta
# (FAIL) first and web1 (all OK) last.
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
push '{"server": {"name": "app2", "key": "k3"}, "period": 1, "services": [
  {"name": "cron", "state": "OK", "info": "ran 12 jobs"}]}'
push '{"server": {"name": "app2", "key": "k3"}, "period": 60, "services": [
  {"name": "queue", "state": "OK", "info": "QUEUE OK - 3 waiting | depth=3;50;100;0"}]}'
push '{"server": {"name": "mail1", "key": "k4"}, "period": 60, "services": [
  {"name": "smtp", "state": "UNK", "info": "check_smtp: connection timed out"}]}'
push '{"server": {"name": "zeta", "key": "k5"}, "period": 60, "services": [
  {"name": "zz", "state": "FAIL", "info": "CRITICAL - disk full"}]}'
curl -sf "$url/api/set/alerts" -d '{"server": {"name": "db1", "key": "k2"},
  "alerts": [{"message": "backup failed: tape full", "service": "backup"}]}' > /dev/null
# postgres and cron promised a report within 1 s: wait until the supervisor calls both offline.
for _ in $(seq 100); do
    [[ $(curl -s "$url/ui/api/status/alerts/" | grep -o 'Monitoring plugin offline' | wc -l) -ge 2 ]] && break
    sleep 0.1
done

# A second server with a login, for the page opened as http://user:pass@host/.
mkdir "$work/login" && cd "$work/login"
printf '[ui]\nusername = admin\npassword = secret\n' > server.ini
start_overc "$bin" "$work/login/log" --config server.ini
login_pid=$OVERC_PID
curl -sf "$OVERC_URL/api/set/service/status" -d '{"server": {"name": "web1", "key": "k1"}, "period": 60,
  "services": [{"name": "load", "state": "OK", "info": "LOAD OK - load average: 0.12"},
               {"name": "disk", "state": "FAIL", "info": "DISK CRITICAL - / 99%"}]}' > /dev/null
cd "$work"

LOGIN_URL="${OVERC_URL/http:\/\//http://admin:secret@}" \
    python3 "$repo/scripts/browser_test.py" "$url" "$out" "$pid"
# The test stopped the server to see the page notice.
wait "$pid" 2>/dev/null || true
pid=
if [[ "${UPDATE_DOCS:-}" == 1 ]]; then
    for f in overview services services-phone service alerts-deliveries overview-dark; do
        cp "$out/$f.png" "$repo/docs/$f.png"
    done
fi

if [[ "${RENDER_SERVICES:-10000}" != 0 ]]; then
    mkdir "$work/render" && cd "$work/render"
    start_overc "$bin" "$work/render/log"
    pid=$OVERC_PID
    # On a shared CI machine the limit is the target with room for a busy neighbour.
    LIMIT_MS="${LIMIT_MS:-2000}" python3 "$repo/scripts/page_render.py" "$OVERC_URL" "${RENDER_SERVICES:-10000}" 3
fi
