#!/usr/bin/env bash
# /metrics validated by Prometheus' own linter.
# Needs: promtool (Debian package `prometheus`) and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
command -v promtool >/dev/null || { echo "needs promtool (apt-get install prometheus)"; exit 1; }
cargo build --quiet --bin overc-server
bin="$PWD/target/debug/overc-server"
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; exit 1; }

cd "$work"
start_overc "$bin" "$work/log"
pid=$OVERC_PID url=$OVERC_URL

curl -sf "$url/api/set/service/status" -d '{"server": {"name": "web \"one\"\\prod", "key": "k"}, "period": 60, "services": [
  {"name": "load", "state": "WARN", "info": "LOAD WARNING | load1=3.5;3;6;0 load5=U;;;0 '"'"'with space'"'"'=1s"},
  {"name": "disk \\ root", "state": "OK", "info": "DISK OK | /=2643MB;5948;5958;0;5968 /boot=68MB;88;93;0;98"},
  {"name": "plain", "state": "BOGUS", "info": "no perfdata"}]}' > /dev/null \
  || fail "push"
curl -sf "$url/api/set/alerts" -d '{"server": {"name": "db", "key": "k"}, "alerts": [{"message": "x"}]}' > /dev/null
curl -sf "$url/ui/api/status/" > /dev/null
curl -sf "$url/metrics" > metrics.txt
promtool check metrics < metrics.txt || fail "promtool refused the metrics:
$(cat metrics.txt)"
grep -q '^overc_perfdata{server="web \\"one\\"\\\\prod",service="load",label="with space",uom="s"} 1$' metrics.txt \
    || fail "escaped perfdata line missing: $(grep perfdata metrics.txt)"
grep -q '^overc_service_state{server="web \\"one\\"\\\\prod",service="disk \\\\ root"} 0$' metrics.txt \
    || fail "escaped state line missing: $(grep service_state metrics.txt)"
echo "e2e-metrics: ok"
